//! Egress proxies (SPEC §9): which forward proxy, if any, an upstream is reached
//! through. An upstream's own `proxy` wins (`"none"` bypasses every proxy); otherwise
//! the `*_PROXY` variables decide, with `NO_PROXY` by curl's rules.
//!
//! Credentials in a proxy URL are kept only as the ready `Proxy-Authorization` value
//! (marked sensitive); everything printable about a proxy (`Display`, `Debug`,
//! `check-config`, errors) shows `user:***@host:port`.

use base64::Engine as _;
use std::fmt;
use std::net::IpAddr;

use http::HeaderValue;
use http::uri::{Authority, Scheme, Uri};

use super::EnvLookup;
use super::typed::UpstreamUrl;

/// A forward proxy to reach an upstream through.
#[derive(Clone)]
pub struct EgressProxy {
    authority: Authority,
    /// `http://host:port/`, what is connected to.
    uri: Uri,
    user: Option<String>,
    /// `Basic base64(user:password)`, sensitive.
    authorization: Option<HeaderValue>,
    /// Where it came from: `proxy` or the variable's name.
    pub source: String,
}

impl EgressProxy {
    /// Parses `[http://][user[:password]@]host[:port][/]`; the port defaults to 1080 as
    /// in curl. Error messages never repeat the URL (it may hold a password).
    pub fn parse(text: &str, source: &str) -> Result<EgressProxy, String> {
        let text = text.trim();
        let rest = match text.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
            Some((scheme, _)) => {
                return Err(format!(
                    "only http:// proxies are supported, not {}://",
                    scheme.to_ascii_lowercase()
                ));
            }
            None => text,
        };
        let rest = rest.split_once('/').map_or(rest, |(host, _path)| host);
        let (userinfo, hostport) = match rest.rsplit_once('@') {
            Some((userinfo, hostport)) => (Some(userinfo), hostport),
            None => (None, rest),
        };
        if hostport.is_empty() {
            return Err("the proxy URL has no host".to_owned());
        }
        let with_port = if has_port(hostport) {
            hostport.to_owned()
        } else {
            format!("{hostport}:1080")
        };
        let authority: Authority = with_port
            .parse()
            .map_err(|_| "the proxy URL's host is not valid".to_owned())?;
        let (user, authorization) = match userinfo {
            None => (None, None),
            Some(userinfo) => {
                let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
                let user = percent_decode(user)?;
                let password = percent_decode(password)?;
                let mut value = HeaderValue::from_str(&basic(&user, &password))
                    .map_err(|_| "the proxy credentials cannot be sent".to_owned())?;
                value.set_sensitive(true);
                (Some(user), Some(value))
            }
        };
        let uri = Uri::builder()
            .scheme(Scheme::HTTP)
            .authority(authority.clone())
            .path_and_query("/")
            .build()
            .map_err(|_| "the proxy URL's host is not valid".to_owned())?;
        Ok(EgressProxy {
            authority,
            uri,
            user,
            authorization,
            source: source.to_owned(),
        })
    }

    /// `http://host:port`, to connect to (never carries credentials).
    pub fn uri(&self) -> &Uri {
        &self.uri
    }

    /// `host:port` of the proxy.
    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    /// The `Proxy-Authorization` value, when the URL had credentials.
    pub fn authorization(&self) -> Option<&HeaderValue> {
        self.authorization.as_ref()
    }
}

/// `http://user:***@host:port`: the one printable form.
impl fmt::Display for EgressProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.user {
            Some(user) => write!(f, "http://{user}:***@{}", self.authority),
            None => write!(f, "http://{}", self.authority),
        }
    }
}

impl fmt::Debug for EgressProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EgressProxy({self} from {})", self.source)
    }
}

/// The proxy for an upstream: its own `proxy` setting, else the environment.
pub fn resolve(
    setting: Option<&str>,
    base: &UpstreamUrl,
    env: EnvLookup<'_>,
) -> Result<Option<EgressProxy>, String> {
    match setting.map(str::trim) {
        Some(none) if none.eq_ignore_ascii_case("none") => Ok(None),
        Some(url) => EgressProxy::parse(url, "proxy").map(Some),
        None => from_env(base, env),
    }
}

fn from_env(base: &UpstreamUrl, env: EnvLookup<'_>) -> Result<Option<EgressProxy>, String> {
    let names: [&str; 4] = if base.scheme == Scheme::HTTPS {
        ["https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"]
    } else {
        ["http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"]
    };
    let Some((name, value)) = names
        .iter()
        .find_map(|n| env(n).filter(|v| !v.trim().is_empty()).map(|v| (*n, v)))
    else {
        return Ok(None);
    };
    let no_proxy = ["no_proxy", "NO_PROXY"]
        .iter()
        .find_map(|n| env(n).filter(|v| !v.trim().is_empty()))
        .unwrap_or_default();
    if no_proxy_matches(&no_proxy, base.authority.host()) {
        return Ok(None);
    }
    EgressProxy::parse(&value, name)
        .map(Some)
        .map_err(|e| format!("environment variable {name}: {e}"))
}

/// curl's `NO_PROXY`: a comma list of host names (each also covering its subdomains,
/// a leading dot optional), IP addresses, CIDR blocks, or `*` for everything.
pub fn no_proxy_matches(list: &str, host: &str) -> bool {
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let ip: Option<IpAddr> = host.parse().ok();
    list.split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .any(|entry| match ip {
            _ if entry == "*" => true,
            Some(ip) => ip_matches(entry, ip),
            None => name_matches(entry, &host),
        })
}

fn name_matches(entry: &str, host: &str) -> bool {
    let entry = entry
        .trim_start_matches('.')
        .trim_end_matches('.')
        .to_ascii_lowercase();
    host == entry
        || host
            .strip_suffix(entry.as_str())
            .is_some_and(|head| head.ends_with('.'))
}

fn ip_matches(entry: &str, ip: IpAddr) -> bool {
    let entry = entry.trim_start_matches('[').trim_end_matches(']');
    let Some((net, bits)) = entry.split_once('/') else {
        return entry.parse::<IpAddr>().is_ok_and(|e| e == ip);
    };
    let (Ok(net), Ok(bits)) = (net.parse::<IpAddr>(), bits.parse::<u32>()) else {
        return false;
    };
    match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(a)) if bits <= 32 => {
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            u32::from(n) & mask == u32::from(a) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(a)) if bits <= 128 => {
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            u128::from(n) & mask == u128::from(a) & mask
        }
        _ => false,
    }
}

/// Whether `host[:port]` ends with a port (an IPv6 literal is in brackets).
fn has_port(hostport: &str) -> bool {
    match hostport.rsplit_once(':') {
        Some((host, port)) => {
            !port.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit())
                && (!host.contains(':') || host.ends_with(']'))
        }
        None => false,
    }
}

fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| "the proxy credentials have a bad %-escape".to_owned())?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "the proxy credentials are not UTF-8".to_owned())
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

#[cfg(test)]
mod tests;
