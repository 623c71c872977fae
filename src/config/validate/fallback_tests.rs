//! check-config on the fallback keys: each rejection names its key path.

use crate::config::{Config, ConfigError, UpstreamKind};

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml(text, &|_| Some("sk-test".into()))
}

fn key_of(text: &str) -> String {
    match parse(text) {
        Ok(_) => panic!("config was accepted:\n{text}"),
        Err(e) => e.key().unwrap_or("(none)").to_owned(),
    }
}

const PRIMARY: &str = "[[upstream]]\nname = \"openai\"\nbase_url = \"https://api.openai.com\"\n";

#[test]
fn models_and_its_alias_deployment_are_one_map() {
    let text = format!(
        "{PRIMARY}fallbacks = [\"mini\"]\n[[upstream]]\nname = \"mini\"\nbase_url = \"https://api.openai.com\"\n\
         fallback_only = true\n[upstream.models]\n\"gpt-4o\" = \"gpt-4o-mini\"\n"
    );
    let config = parse(&text).expect("valid");
    let mini = &config.upstreams[1];
    assert_eq!(mini.models["gpt-4o"], "gpt-4o-mini");
    assert!(mini.fallback_only && mini.path_prefix.is_none());
    assert!(config.upstreams[0].fallback_on.retryable, "the default");
    let printed = config.effective_toml();
    assert!(!printed.contains("deployment") && printed.contains("[upstream.models]"));
    let again = Config::from_toml(&printed, &|_| Some("k".into())).expect("round trip");
    assert_eq!(again.upstreams[1].models, mini.models);

    let alias = "[[upstream]]\nname = \"eu\"\nkind = \"azure\"\nbase_url = \"https://eu\"\n\
                 [upstream.deployment]\n\"gpt-4o\" = \"gpt4o-eu\"\n";
    let config = parse(alias).expect("valid");
    assert_eq!(config.upstreams[0].kind, UpstreamKind::Azure);
    assert_eq!(config.upstreams[0].models["gpt-4o"], "gpt4o-eu");
    let both = format!("{alias}[upstream.models]\n\"a\" = \"b\"\n");
    assert_eq!(key_of(&both), "upstream[0].deployment");
    let bad = format!("{PRIMARY}[upstream.models]\n\"gpt-4o\" = \"gpt 4o\"\n");
    assert_eq!(key_of(&bad), "upstream[0].models.gpt-4o");
}

#[test]
fn fallback_on_takes_the_four_known_values_only() {
    let text = format!(
        "{PRIMARY}fallback_on = [\"retryable\", \"context_length_exceeded\", \"content_filter\", \"quota_exhausted\"]\n"
    );
    let on = parse(&text).expect("valid").upstreams[0].fallback_on;
    assert!(on.retryable && on.context_length_exceeded && on.content_filter && on.quota_exhausted);
    let unknown = format!("{PRIMARY}fallback_on = [\"retryable\", \"overloaded\"]\n");
    assert_eq!(key_of(&unknown), "upstream[0].fallback_on[1]");
    let empty = format!("{PRIMARY}fallback_on = []\n");
    assert_eq!(key_of(&empty), "upstream[0].fallback_on");
}

#[test]
fn a_fallback_only_upstream_has_no_fallbacks_and_no_route() {
    let only = "[[upstream]]\nname = \"backup\"\nbase_url = \"https://b\"\nfallback_only = true\n";
    let with_fallbacks =
        format!("{PRIMARY}fallbacks = [\"backup\"]\n{only}fallbacks = [\"openai\"]\n");
    assert_eq!(key_of(&with_fallbacks), "upstream[1].fallbacks");
    let with_prefix = format!("{PRIMARY}fallbacks = [\"backup\"]\n{only}path_prefix = \"/b/\"\n");
    assert_eq!(key_of(&with_prefix), "upstream[1].path_prefix");
}

#[test]
fn a_fallback_only_upstream_nobody_falls_back_to_is_rejected() {
    let text = format!(
        "{PRIMARY}[[upstream]]\nname = \"backup\"\nbase_url = \"https://b\"\nfallback_only = true\n"
    );
    assert_eq!(key_of(&text), "upstream[1].fallback_only");
}

#[test]
fn a_fallback_naming_an_unknown_upstream_is_rejected() {
    let text = format!("{PRIMARY}fallbacks = [\"nowhere\"]\n");
    assert_eq!(key_of(&text), "upstream[0].fallbacks[0]");
}

#[test]
fn two_routed_upstreams_may_back_each_other_up() {
    let text = "[[upstream]]\nname = \"us\"\nkind = \"azure\"\nbase_url = \"https://us\"\npath_prefix = \"/openai/\"\nfallbacks = [\"eu\"]\n\
                [[upstream]]\nname = \"eu\"\nkind = \"azure\"\nbase_url = \"https://eu\"\npath_prefix = \"/eu/\"\nfallbacks = [\"us\"]\n";
    let config = parse(text).expect("valid");
    assert_eq!(config.upstreams[1].fallbacks, ["us"]);
}
