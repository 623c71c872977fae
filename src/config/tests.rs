use std::time::Duration;

use super::*;

fn no_env(_: &str) -> Option<String> {
    None
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml(text, &no_env)
}

fn key_of(text: &str) -> String {
    match parse(text) {
        Ok(_) => panic!("config was accepted:\n{text}"),
        Err(e) => e.key().unwrap_or("(none)").to_owned(),
    }
}

const ONE_UPSTREAM: &str = r#"
[[upstream]]
name = "openai"
base_url = "https://api.openai.com"
"#;

#[test]
fn embedded_default_is_valid_and_points_at_openai() {
    let config = parse(EMBEDDED_DEFAULT).expect("embedded default");
    assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(config.upstreams.len(), 1);
    assert_eq!(
        config.upstreams[0].base_url.to_string(),
        "https://api.openai.com"
    );
}

#[test]
fn spec_defaults_fill_every_omitted_key() {
    let config = parse(ONE_UPSTREAM).expect("valid");
    let r = &config.retry;
    assert_eq!(r.max_retries, 2);
    assert_eq!(r.base_delay, Duration::from_millis(250));
    assert_eq!(r.throttle_base_delay, Duration::from_secs(1));
    assert_eq!(r.max_delay, Duration::from_secs(8));
    assert_eq!(r.max_server_delay, Duration::from_secs(60));
    assert_eq!(r.attempt_timeout, Duration::from_secs(600));
    assert_eq!(r.first_event_timeout, Duration::from_secs(120));
    assert_eq!(r.idle_timeout, Duration::from_secs(60));
    assert_eq!(r.deadline, Duration::from_secs(600));
    assert!(r.retry_ambiguous);
    assert_eq!(r.budget_ratio, 0.2);
    assert_eq!(r.budget_min_per_second, 10);
    assert_eq!(config.max_body_bytes, 64 << 20);
    assert_eq!(config.retry_buffer_bytes, 16 << 20);
    assert_eq!(config.retry_buffer_total_bytes, 256 << 20);
    assert_eq!(config.client_header_timeout, Duration::from_secs(30));
    assert_eq!(config.client_idle_timeout, Duration::from_secs(75));
    assert_eq!(config.max_connections.get(), 10_000);
    assert_eq!(config.shutdown_grace, Duration::from_secs(30));
    assert_eq!(config.failure_log.retention_days.get(), 30);
    let up = &config.upstreams[0];
    assert_eq!(up.kind, UpstreamKind::OpenAi);
    assert_eq!(up.path_prefix.as_deref(), Some("/"));
    assert_eq!(up.retry, config.retry);
}

#[test]
fn documented_example_config_is_valid() {
    let text = include_str!("../../config/backstop.toml");
    let env = |var: &str| (var == "AZURE_OPENAI_API_KEY").then(|| "test-key".to_owned());
    Config::from_toml(text, &env).expect("config/backstop.toml must stay valid");
}

#[test]
fn unknown_top_level_key_is_named() {
    assert_eq!(
        key_of(&format!("lisen = \"127.0.0.1:1\"\n{ONE_UPSTREAM}")),
        "lisen"
    );
}

#[test]
fn unknown_nested_key_is_named_with_its_path() {
    let text = format!("[retry]\nmax_dely = \"1s\"\n{ONE_UPSTREAM}");
    assert_eq!(key_of(&text), "retry.max_dely");
}

#[test]
fn bad_duration_is_named() {
    let text = format!("[retry]\nbase_delay = \"fast\"\n{ONE_UPSTREAM}");
    assert_eq!(key_of(&text), "retry.base_delay");
}

#[test]
fn bad_listen_address_is_named() {
    assert_eq!(
        key_of(&format!("listen = \"nowhere\"\n{ONE_UPSTREAM}")),
        "listen"
    );
}

#[test]
fn base_delay_above_max_delay_is_rejected() {
    let text = format!("[retry]\nbase_delay = \"10s\"\nmax_delay = \"1s\"\n{ONE_UPSTREAM}");
    assert_eq!(key_of(&text), "retry.base_delay");
}

#[test]
fn zero_timeout_is_rejected() {
    let text = format!("[retry]\nidle_timeout = \"0s\"\n{ONE_UPSTREAM}");
    assert_eq!(key_of(&text), "retry.idle_timeout");
}

#[test]
fn budget_ratio_outside_range_is_rejected() {
    let text = format!("[retry]\nbudget_ratio = -0.5\n{ONE_UPSTREAM}");
    assert_eq!(key_of(&text), "retry.budget_ratio");
    let text = format!("[retry]\nbudget_ratio = nan\n{ONE_UPSTREAM}");
    assert_eq!(key_of(&text), "retry.budget_ratio");
}

#[test]
fn zero_budget_means_no_retries_and_is_valid() {
    let text = format!("[retry]\nbudget_ratio = 0.0\nbudget_min_per_second = 0\n{ONE_UPSTREAM}");
    parse(&text).expect("zero budget is valid");
}

#[test]
fn retry_buffer_larger_than_max_body_is_rejected() {
    let text = format!("max_body_bytes = 100\nretry_buffer_bytes = 200\n{ONE_UPSTREAM}");
    assert_eq!(key_of(&text), "retry_buffer_bytes");
}

#[test]
fn max_body_alone_lowers_the_default_retry_buffer() {
    let config = parse(&format!("max_body_bytes = 65536\n{ONE_UPSTREAM}")).expect("valid");
    assert_eq!(config.retry_buffer_bytes, 65536);
    assert!(
        config
            .effective_toml()
            .contains("retry_buffer_bytes = 65536"),
        "{}",
        config.effective_toml()
    );
}

#[test]
fn client_limits_must_be_positive() {
    for key in ["client_header_timeout", "client_idle_timeout"] {
        assert_eq!(key_of(&format!("{key} = \"0s\"\n{ONE_UPSTREAM}")), key);
    }
    assert_eq!(
        key_of(&format!("max_connections = 0\n{ONE_UPSTREAM}")),
        "max_connections"
    );
}

#[test]
fn missing_upstream_is_rejected() {
    assert_eq!(key_of("listen = \"127.0.0.1:8080\"\n"), "upstream");
}

#[test]
fn upstream_without_base_url_is_named() {
    assert_eq!(key_of("[[upstream]]\nname = \"a\"\n"), "upstream[0]");
}

#[test]
fn bad_base_url_is_named() {
    for url in [
        "api.openai.com",
        "ftp://x",
        "https://",
        "https://h/?a=1",
        "https://u:p@h",
    ] {
        let text = format!("[[upstream]]\nname = \"a\"\nbase_url = \"{url}\"\n");
        assert_eq!(key_of(&text), "upstream[0].base_url", "{url}");
    }
}

#[test]
fn base_url_path_is_kept_without_trailing_slash() {
    let text = "[[upstream]]\nname = \"gw\"\nbase_url = \"http://gw.local:8000/llm/\"\n";
    let config = parse(text).expect("valid");
    assert_eq!(config.upstreams[0].base_url.path, "/llm");
    assert_eq!(
        config.upstreams[0].base_url.authority.as_str(),
        "gw.local:8000"
    );
}

#[test]
fn unknown_kind_is_named() {
    let text = "[[upstream]]\nname = \"a\"\nkind = \"bedrock\"\nbase_url = \"https://x\"\n";
    assert_eq!(key_of(text), "upstream[0].kind");
}

#[test]
fn duplicate_names_and_prefixes_are_rejected() {
    let dup_name = "[[upstream]]\nname=\"a\"\nbase_url=\"https://x\"\n[[upstream]]\nname=\"a\"\nbase_url=\"https://y\"\npath_prefix=\"/openai/\"\n";
    assert_eq!(key_of(dup_name), "upstream[1].name");
    let dup_prefix = "[[upstream]]\nname=\"a\"\nbase_url=\"https://x\"\n[[upstream]]\nname=\"b\"\nbase_url=\"https://y\"\n";
    assert_eq!(key_of(dup_prefix), "upstream[1].path_prefix");
}

#[test]
fn path_prefix_must_start_with_slash() {
    let text = "[[upstream]]\nname=\"a\"\nbase_url=\"https://x\"\npath_prefix=\"v1\"\n";
    assert_eq!(key_of(text), "upstream[0].path_prefix");
}

#[test]
fn unknown_fallback_is_rejected() {
    let text = "[[upstream]]\nname=\"a\"\nbase_url=\"https://x\"\nfallbacks=[\"b\"]\n";
    assert_eq!(key_of(text), "upstream[0].fallbacks[0]");
    let own = "[[upstream]]\nname=\"a\"\nbase_url=\"https://x\"\nfallbacks=[\"a\"]\n";
    assert_eq!(key_of(own), "upstream[0].fallbacks[0]");
}

#[test]
fn missing_api_key_env_var_is_named() {
    let text =
        "[[upstream]]\nname=\"a\"\nbase_url=\"https://x\"\napi_key_env=\"BACKSTOP_TEST_UNSET\"\n";
    let err = parse(text).expect_err("unset variable");
    assert_eq!(err.key(), Some("upstream[0].api_key_env"));
    assert!(err.to_string().contains("BACKSTOP_TEST_UNSET"), "{err}");
}

#[test]
fn api_key_is_read_from_env_and_never_printed() {
    let text =
        "[[upstream]]\nname=\"a\"\nkind=\"azure\"\nbase_url=\"https://x\"\napi_key_env=\"K\"\n";
    let env = |var: &str| (var == "K").then(|| "sk-secret-marker".to_owned());
    let config = Config::from_toml(text, &env).expect("valid");
    let key = config.upstreams[0].api_key.as_ref().expect("key");
    assert_eq!(key.header_value.as_bytes(), b"sk-secret-marker");
    assert!(key.header_value.is_sensitive());
    assert!(!format!("{config:?}").contains("sk-secret-marker"));
    assert!(!config.effective_toml().contains("sk-secret-marker"));
    assert!(config.effective_toml().contains("api_key_env = \"K\""));
}

#[test]
fn upstream_retry_override_inherits_the_rest() {
    let text = "[retry]\nmax_retries = 4\n[[upstream]]\nname=\"a\"\nbase_url=\"https://x\"\n[upstream.retry]\nidle_timeout=\"5m\"\n";
    let config = parse(text).expect("valid");
    let r = &config.upstreams[0].retry;
    assert_eq!(r.max_retries, 4);
    assert_eq!(r.idle_timeout, Duration::from_secs(300));
}

#[test]
fn upstream_retry_override_is_validated_with_its_path() {
    let text =
        "[[upstream]]\nname=\"a\"\nbase_url=\"https://x\"\n[upstream.retry]\nmax_delay=\"1ms\"\n";
    assert_eq!(key_of(text), "upstream[0].retry.base_delay");
}

#[test]
fn requests_burst_needs_requests_per_minute() {
    let text = "[[upstream]]\nname=\"a\"\nbase_url=\"https://x\"\nrequests_burst=3\n";
    assert_eq!(key_of(text), "upstream[0].requests_burst");
}

#[test]
fn circuit_breaker_zero_failures_is_rejected() {
    let text = "[[upstream]]\nname=\"a\"\nbase_url=\"https://x\"\n[upstream.circuit_breaker]\nconsecutive_failures=0\nopen_for=\"30s\"\n";
    assert_eq!(
        key_of(text),
        "upstream[0].circuit_breaker.consecutive_failures"
    );
}

#[test]
fn effective_toml_round_trips() {
    let config = parse(EMBEDDED_DEFAULT).expect("valid");
    let again = parse(&config.effective_toml()).expect("effective config parses");
    assert_eq!(again.retry, config.retry);
    assert_eq!(again.listen, config.listen);
}

#[test]
fn syntax_error_reports_a_line() {
    let err = parse("listen = \n").expect_err("syntax error");
    assert!(err.to_string().contains("line 1"), "{err}");
}

#[test]
fn limits_keys_have_defaults_and_are_validated() {
    let config = parse(ONE_UPSTREAM).expect("valid");
    let up = &config.upstreams[0];
    assert!(up.pacing);
    assert_eq!(up.default_max_tokens, 256);
    assert!(up.models.is_empty());
    let text = "[[upstream]]\nname=\"a\"\nbase_url=\"https://x\"\npacing=false\n[upstream.deployment]\n\"gpt-4o\" = \"gpt4o eu\"\n";
    assert_eq!(key_of(text), "upstream[0].deployment.gpt-4o");
}

#[test]
fn metrics_models_are_an_optional_validated_allow_list() {
    assert!(
        parse(ONE_UPSTREAM)
            .expect("valid")
            .metrics
            .models
            .is_empty()
    );
    let config = parse(&format!(
        "[metrics]\nmodels = [\"gpt-4o\", \"gpt-4o-mini\"]\n{ONE_UPSTREAM}"
    ))
    .expect("valid");
    assert_eq!(config.metrics.models, ["gpt-4o", "gpt-4o-mini"]);
    assert_eq!(
        key_of(&format!(
            "[metrics]\nmodels = [\"a\", \"a\"]\n{ONE_UPSTREAM}"
        )),
        "metrics.models[1]"
    );
    assert_eq!(
        key_of(&format!("[metrics]\nmodels = [\"\"]\n{ONE_UPSTREAM}")),
        "metrics.models[0]"
    );
    assert_eq!(
        key_of(&format!("[metrics]\nmodel = [\"a\"]\n{ONE_UPSTREAM}")),
        "metrics.model"
    );
    let many: Vec<String> = (0..101).map(|i| format!("\"m{i}\"")).collect();
    assert_eq!(
        key_of(&format!(
            "[metrics]\nmodels = [{}]\n{ONE_UPSTREAM}",
            many.join(",")
        )),
        "metrics.models"
    );
}
