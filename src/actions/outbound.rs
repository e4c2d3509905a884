//! Where HTTP steps, checks and notify channels may go: the outbound policy.
//!
//! A runbook's URLs may be built from what an alert sent (`${ payload... }`), so a request could be
//! pointed at whatever the phasegate host can reach that the outside cannot: the cloud metadata
//! service, an admin port on loopback, the internal network. Every public address is allowed;
//! addresses that are not (private, loopback, link-local, shared, unspecified, multicast, reserved,
//! and their IPv4-in-IPv6 forms) and the metadata services' names are refused unless configuration
//! allows them explicitly, by address range or by host name.
//!
//! The check is made on the address actually connected to: the HTTP client resolves names only
//! through [`Resolver`], which drops refused addresses, so a name cannot pass a check and then
//! resolve elsewhere for the connection. A URL whose host is an address is never resolved, so
//! [`Policy::check_url`] checks it before anything is sent, and again at every redirect.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

use ipnet::IpNet;
use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Names of cloud metadata services, refused like the address they resolve to even where they
/// resolve to nothing (so that a refusal says what was meant).
const METADATA_NAMES: &[&str] =
    &["metadata.google.internal", "metadata", "instance-data", "instance-data.ec2.internal"];

/// Addresses that cloud metadata services answer on, named as such in refusals: AWS, GCP, Azure and
/// Oracle (`169.254.169.254`), AWS over IPv6 (`fd00:ec2::254`), Alibaba (`100.100.100.200`), and the
/// ECS task metadata endpoint (`169.254.170.2`).
const METADATA_ADDRESSES: &[IpAddr] = &[
    IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254)),
    IpAddr::V4(Ipv4Addr::new(169, 254, 170, 2)),
    IpAddr::V4(Ipv4Addr::new(100, 100, 100, 200)),
    IpAddr::V6(Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)),
];

/// How many redirects a request follows, when configuration lets it follow any.
pub const MAX_REDIRECTS: usize = 5;

/// What configuration allows beyond public addresses, and whether redirects are followed.
/// The default refuses every address that is not public and follows no redirect.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    allowed: Vec<Allowed>,
    follow_redirects: bool,
}

/// One entry of `outbound.allow`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Allowed {
    /// Addresses in a range (`10.20.0.0/16`; a single address is a range of one).
    Range(IpNet),
    /// A host name, whatever it resolves to (`idp.internal.example`).
    Host(String),
    /// Every name under a domain, not the domain itself (`*.corp.example`).
    Subdomains(String),
}

impl FromStr for Allowed {
    type Err = String;

    /// Reads `10.20.0.0/16`, `127.0.0.1`, `::1`, `idp.internal.example` or `*.corp.example`.
    fn from_str(text: &str) -> Result<Allowed, String> {
        let text = text.trim();
        if let Ok(range) = text.parse::<IpNet>() {
            return Ok(Allowed::Range(range.trunc()));
        }
        if let Ok(address) = text.parse::<IpAddr>() {
            return Ok(Allowed::Range(IpNet::from(address)));
        }
        let (wildcard, name) = match text.strip_prefix("*.") {
            Some(name) => (true, name),
            None => (false, text),
        };
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let is_name_character = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.';
        if name.is_empty() || !name.chars().all(is_name_character) || name.split('.').any(str::is_empty) {
            return Err(format!(
                "`{text}` is neither an address, a range such as `10.20.0.0/16`, nor a host name such as `idp.internal.example`"
            ));
        }
        // `127.1` or `0x7f.0.0.1` are addresses to a URL parser; allowing them as names would
        // allow nothing, so say how to write them.
        let url = Url::parse(&format!("http://{name}/")).map_err(|_| format!("`{text}` is not a host name"))?;
        if let Some(address) = address_host(&url) {
            return Err(format!("`{text}` is the address `{address}` written unusually; write `{address}`"));
        }
        Ok(if wildcard { Allowed::Subdomains(name) } else { Allowed::Host(name) })
    }
}

impl fmt::Display for Allowed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Allowed::Range(range) => write!(f, "{range}"),
            Allowed::Host(name) => write!(f, "{name}"),
            Allowed::Subdomains(name) => write!(f, "*.{name}"),
        }
    }
}

/// Why an address is not public. Everything else is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// `0.0.0.0/8`, `::`: connecting to it reaches this host.
    Unspecified,
    /// `127.0.0.0/8`, `::1`.
    Loopback,
    /// RFC 1918 (`10/8`, `172.16/12`, `192.168/16`), unique local `fc00::/7`, site-local
    /// `fec0::/10`, local-use NAT64 `64:ff9b:1::/48`.
    Private,
    /// `100.64.0.0/10`, carrier-grade NAT (and Alibaba's metadata service).
    Shared,
    /// `169.254.0.0/16` (the cloud metadata address among them), `fe80::/10`.
    LinkLocal,
    /// `224.0.0.0/4`, `ff00::/8`.
    Multicast,
    /// `255.255.255.255`.
    Broadcast,
    /// `192.0.0.0/24` (protocol assignments), `198.18.0.0/15` (benchmarking), `240.0.0.0/4`.
    Reserved,
}

impl Class {
    fn describe(self) -> &'static str {
        match self {
            Class::Unspecified => "an unspecified address (this host)",
            Class::Loopback => "a loopback address",
            Class::Private => "a private address",
            Class::Shared => "a shared (carrier-grade NAT) address",
            Class::LinkLocal => "a link-local address",
            Class::Multicast => "a multicast address",
            Class::Broadcast => "the broadcast address",
            Class::Reserved => "a reserved address",
        }
    }
}

/// Why an address is refused by default, or `None` for a public address. IPv6 addresses that
/// carry an IPv4 address (mapped `::ffff:a.b.c.d`, compatible `::a.b.c.d`, NAT64 `64:ff9b::a.b.c.d`)
/// are what they carry: connecting to them reaches it.
pub fn classify(address: IpAddr) -> Option<Class> {
    match carried(address) {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(address: Ipv4Addr) -> Option<Class> {
    let [a, b, c, _] = address.octets();
    Some(match (a, b, c) {
        (0, _, _) => Class::Unspecified,
        (10, _, _) => Class::Private,
        (100, 64..=127, _) => Class::Shared,
        (127, _, _) => Class::Loopback,
        (169, 254, _) => Class::LinkLocal,
        (172, 16..=31, _) => Class::Private,
        (192, 0, 0) => Class::Reserved,
        (192, 168, _) => Class::Private,
        (198, 18..=19, _) => Class::Reserved,
        (224..=239, _, _) => Class::Multicast,
        _ if address == Ipv4Addr::BROADCAST => Class::Broadcast,
        (240..=255, _, _) => Class::Reserved,
        _ => return None,
    })
}

fn classify_v6(address: Ipv6Addr) -> Option<Class> {
    let segments = address.segments();
    Some(match segments {
        _ if address.is_unspecified() => Class::Unspecified,
        _ if address.is_loopback() => Class::Loopback,
        [0x64, 0xff9b, 1, ..] => Class::Private,
        [first, ..] if first & 0xfe00 == 0xfc00 => Class::Private,
        [first, ..] if first & 0xffc0 == 0xfe80 => Class::LinkLocal,
        [first, ..] if first & 0xffc0 == 0xfec0 => Class::Private,
        [first, ..] if first & 0xff00 == 0xff00 => Class::Multicast,
        _ => return None,
    })
}

/// The IPv4 address an IPv6 address carries: IPv4-mapped (`::ffff:0:0/96`), IPv4-compatible
/// (`::/96`, deprecated but still routed by some stacks; `::` and `::1` are themselves) and the
/// NAT64 well-known prefix (`64:ff9b::/96`), which a NAT64 gateway turns into the IPv4 address.
fn embedded_v4(address: Ipv6Addr) -> Option<Ipv4Addr> {
    let [a, b, c, d, e, f, _, _] = address.segments();
    let [.., w, x, y, z] = address.octets();
    let carried = Ipv4Addr::new(w, x, y, z);
    match [a, b, c, d, e, f] {
        [0, 0, 0, 0, 0, 0xffff] | [0x64, 0xff9b, 0, 0, 0, 0] => Some(carried),
        [0, 0, 0, 0, 0, 0] if !address.is_unspecified() && !address.is_loopback() => Some(carried),
        _ => None,
    }
}

/// The address connecting to `address` reaches: the IPv4 address it carries, or itself.
fn carried(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => embedded_v4(v6).map_or(address, IpAddr::V4),
        IpAddr::V4(_) => address,
    }
}

/// Why a request may not go where it was pointed. The message names the host and the address,
/// never the rest of the URL (which may be a secret, as a Slack webhook's is).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The host as the URL named it.
    host: String,
    why: Why,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Why {
    /// The host's address (or an address its name resolved to) is not public.
    Address { address: IpAddr, class: Class, resolved: bool },
    /// The host is a cloud metadata service's name.
    MetadataName,
}

impl std::error::Error for Refusal {}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Refusal { host, why } = self;
        match why {
            Why::MetadataName => write!(f, "`{host}` is the name of a cloud metadata service")?,
            Why::Address { address, class, resolved } => {
                if *resolved {
                    write!(f, "`{host}` resolves to `{address}`, which is ")?;
                } else {
                    write!(f, "`{host}` is ")?;
                }
                if let IpAddr::V6(v6) = address
                    && let Some(v4) = embedded_v4(*v6)
                {
                    write!(f, "IPv4 `{v4}` in IPv6 form, ")?;
                }
                write!(f, "{}", class.describe())?;
                if METADATA_ADDRESSES.contains(address) || METADATA_ADDRESSES.contains(&carried(*address)) {
                    write!(f, " (cloud metadata)")?;
                }
            }
        }
        write!(f, "; allow it under `outbound.allow` to call it")
    }
}

impl Policy {
    /// A policy allowing `allowed` beyond public addresses.
    pub fn new(allowed: Vec<Allowed>) -> Policy {
        Policy { allowed, follow_redirects: false }
    }

    /// Whether redirects are followed (each hop checked like the first request).
    pub fn follow_redirects(mut self, follow: bool) -> Policy {
        self.follow_redirects = follow;
        self
    }

    pub fn follows_redirects(&self) -> bool {
        self.follow_redirects
    }

    /// What configuration allows beyond public addresses.
    pub fn allowed(&self) -> &[Allowed] {
        &self.allowed
    }

    /// Whether `name` (lowercase, as a URL has it) is allowed by name.
    fn allows_name(&self, name: &str) -> bool {
        let name = name.trim_end_matches('.');
        self.allowed.iter().any(|allowed| match allowed {
            Allowed::Host(host) => host.eq_ignore_ascii_case(name),
            Allowed::Subdomains(domain) => {
                name.len() > domain.len() + 1
                    && name[name.len() - domain.len()..].eq_ignore_ascii_case(domain)
                    && name.as_bytes()[name.len() - domain.len() - 1] == b'.'
            }
            Allowed::Range(_) => false,
        })
    }

    /// Whether `address` is in an allowed range, as written or as the IPv4 address it carries.
    fn allows_address(&self, address: IpAddr) -> bool {
        let carried = carried(address);
        self.allowed.iter().any(|allowed| match allowed {
            Allowed::Range(range) => range.contains(&address) || range.contains(&carried),
            Allowed::Host(_) | Allowed::Subdomains(_) => false,
        })
    }

    /// Checks an address the URL names directly (it bypasses name resolution).
    pub fn check_address(&self, host: &str, address: IpAddr) -> Result<(), Refusal> {
        self.check(host, address, false)
    }

    fn check(&self, host: &str, address: IpAddr, resolved: bool) -> Result<(), Refusal> {
        match classify(address) {
            Some(class) if !self.allows_address(address) => {
                Err(Refusal { host: host.to_string(), why: Why::Address { address, class, resolved } })
            }
            _ => Ok(()),
        }
    }

    /// Checks a host name before it is resolved: refused if it is a metadata service's name.
    pub fn check_name(&self, name: &str) -> Result<(), Refusal> {
        let bare = name.trim_end_matches('.');
        if METADATA_NAMES.iter().any(|metadata| metadata.eq_ignore_ascii_case(bare)) && !self.allows_name(name) {
            return Err(Refusal { host: name.to_string(), why: Why::MetadataName });
        }
        Ok(())
    }

    /// Checks an address that `name` resolved to: allowed when the name is allowed, or when the
    /// address would be allowed on its own.
    pub fn check_resolved(&self, name: &str, address: IpAddr) -> Result<(), Refusal> {
        if self.allows_name(name) { Ok(()) } else { self.check(name, address, true) }
    }

    /// Checks what can be checked of a URL before it is sent: an address as host, or a metadata
    /// service's name. Other names are checked as they resolve, by [`Resolver`].
    pub fn check_url(&self, url: &Url) -> Result<(), Refusal> {
        let host = url.host_str().unwrap_or_default();
        match address_host(url) {
            Some(address) => self.check_address(host, address),
            None => self.check_name(host),
        }
    }

    /// Checks the address a response came from, against the URL it was asked of: a second look,
    /// after the fact, in case a connection was ever made without [`Resolver`].
    pub fn check_connected(&self, url: &Url, address: IpAddr) -> Result<(), Refusal> {
        let host = url.host_str().unwrap_or_default();
        match address_host(url) {
            Some(_) => self.check_address(host, address),
            None => self.check_resolved(host, address),
        }
    }
}

/// The URL's host when it is an address, which the HTTP client connects to without resolving it.
/// The URL parser has already turned every way of writing an IPv4 address (`2130706433`,
/// `0x7f.1`, `127.1`) into `a.b.c.d`, and the connector takes a host that parses as an address,
/// brackets stripped, as that address: this decides the same way.
fn address_host(url: &Url) -> Option<IpAddr> {
    let host = url.host_str()?;
    host.strip_prefix('[').and_then(|host| host.strip_suffix(']')).unwrap_or(host).parse().ok()
}

/// The HTTP client's name resolution: the system's resolver, with every address the policy refuses
/// dropped. When none is left the resolution fails with the [`Refusal`] of the first, so the
/// connection is never attempted and the error says why.
pub struct Resolver {
    policy: Arc<Policy>,
}

impl Resolver {
    pub fn new(policy: Arc<Policy>) -> Resolver {
        Resolver { policy }
    }
}

impl Resolve for Resolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = Arc::clone(&self.policy);
        let name = name.as_str().to_string();
        Box::pin(async move {
            policy.check_name(&name)?;
            let found: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            let mut refused = None;
            let kept: Vec<SocketAddr> = found
                .into_iter()
                .filter(|socket| match policy.check_resolved(&name, socket.ip()) {
                    Ok(()) => true,
                    Err(refusal) => {
                        refused.get_or_insert(refusal);
                        false
                    }
                })
                .collect();
            match refused {
                Some(refusal) if kept.is_empty() => Err(refusal.into()),
                _ if kept.is_empty() => Err(format!("`{name}` has no address").into()),
                _ => Ok(Box::new(kept.into_iter()) as Addrs),
            }
        })
    }
}

/// The refusal somewhere in an error's chain of causes, if the policy is why it failed.
pub fn refusal_in<'e>(error: &'e (dyn std::error::Error + 'static)) -> Option<&'e Refusal> {
    let mut cause = Some(error);
    while let Some(error) = cause {
        if let Some(refusal) = error.downcast_ref::<Refusal>() {
            return Some(refusal);
        }
        cause = error.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allowed: &[&str]) -> Policy {
        Policy::new(allowed.iter().map(|entry| entry.parse().unwrap()).collect())
    }

    /// The refusal of a URL's host by the default policy, as its message.
    fn refused(url: &str) -> Option<String> {
        let url = Url::parse(url).unwrap();
        Policy::default().check_url(&url).err().map(|refusal| refusal.to_string())
    }

    #[test]
    fn addresses_are_classified() {
        use Class::*;
        let table: &[(&str, Option<Class>)] = &[
            ("0.0.0.0", Some(Unspecified)),
            ("0.1.2.3", Some(Unspecified)),
            ("10.0.0.1", Some(Private)),
            ("10.255.255.255", Some(Private)),
            ("100.63.255.255", None),
            ("100.64.0.1", Some(Shared)),
            ("100.100.100.200", Some(Shared)),
            ("100.127.255.255", Some(Shared)),
            ("100.128.0.0", None),
            ("127.0.0.1", Some(Loopback)),
            ("127.255.1.2", Some(Loopback)),
            ("169.254.169.254", Some(LinkLocal)),
            ("169.254.0.1", Some(LinkLocal)),
            ("172.15.255.255", None),
            ("172.16.0.1", Some(Private)),
            ("172.31.255.255", Some(Private)),
            ("172.32.0.0", None),
            ("192.0.0.8", Some(Reserved)),
            ("192.168.1.1", Some(Private)),
            ("198.18.0.1", Some(Reserved)),
            ("198.19.255.255", Some(Reserved)),
            ("198.20.0.0", None),
            ("224.0.0.1", Some(Multicast)),
            ("239.255.255.250", Some(Multicast)),
            ("240.0.0.1", Some(Reserved)),
            ("255.255.255.255", Some(Broadcast)),
            ("1.1.1.1", None),
            ("8.8.8.8", None),
            ("93.184.215.14", None),
            ("::", Some(Unspecified)),
            ("::1", Some(Loopback)),
            ("::ffff:127.0.0.1", Some(Loopback)),
            ("::ffff:169.254.169.254", Some(LinkLocal)),
            ("::ffff:10.1.2.3", Some(Private)),
            ("::ffff:0.0.0.0", Some(Unspecified)),
            ("::ffff:100.64.0.1", Some(Shared)),
            ("::ffff:8.8.8.8", None),
            ("::127.0.0.1", Some(Loopback)),
            ("::192.168.0.1", Some(Private)),
            ("64:ff9b::a9fe:a9fe", Some(LinkLocal)),
            ("64:ff9b::8.8.8.8", None),
            ("64:ff9b:1::1", Some(Private)),
            ("fc00::1", Some(Private)),
            ("fd00:ec2::254", Some(Private)),
            ("fe80::1", Some(LinkLocal)),
            ("febf::1", Some(LinkLocal)),
            ("fec0::1", Some(Private)),
            ("ff02::1", Some(Multicast)),
            ("2001:4860:4860::8888", None),
            ("2606:4700::1111", None),
        ];
        for (text, expected) in table {
            let address: IpAddr = text.parse().unwrap();
            assert_eq!(classify(address), *expected, "{text}");
        }
    }

    #[test]
    fn allowed_ranges_and_names_override_the_default() {
        let policy = policy(&["10.20.0.0/16", "127.0.0.1", "idp.internal.example", "*.corp.example"]);
        let address = |text: &str| text.parse::<IpAddr>().unwrap();
        // Allowed ranges, as written and in their IPv4-mapped form.
        for allowed in ["10.20.1.2", "127.0.0.1", "::ffff:127.0.0.1", "64:ff9b::7f00:1", "8.8.8.8"] {
            assert_eq!(policy.check_address(allowed, address(allowed)), Ok(()), "{allowed}");
        }
        for refused in ["10.21.0.1", "127.0.0.2", "::1", "169.254.169.254"] {
            assert!(policy.check_address(refused, address(refused)).is_err(), "{refused}");
        }
        // Allowed names, whatever they resolve to; other names by their addresses.
        let private = address("10.99.0.1");
        for name in ["idp.internal.example", "IDP.Internal.Example.", "vault.corp.example", "a.b.corp.example"] {
            assert_eq!(policy.check_resolved(name, private), Ok(()), "{name}");
        }
        for name in ["corp.example", "xcorp.example", "idp.internal.example.evil", "evil.example"] {
            assert!(policy.check_resolved(name, private).is_err(), "{name}");
        }
        assert_eq!(policy.check_resolved("evil.example", address("10.20.0.5")), Ok(()));
        assert_eq!(policy.check_resolved("public.example", address("8.8.8.8")), Ok(()));
        // Metadata names are refused by name, unless allowed by name.
        assert!(policy.check_name("metadata.google.internal").is_err());
        assert!(policy.check_name("Metadata.").is_err());
        assert_eq!(policy.check_name("metadata.example"), Ok(()));
        assert_eq!(self::policy(&["metadata.google.internal"]).check_name("metadata.google.internal"), Ok(()));
    }

    #[test]
    fn every_way_of_writing_an_address_in_a_url_is_checked() {
        // The URL parser turns every IPv4 form into `a.b.c.d` (and IPv6 into its short form); the
        // check sees the host as the connector does.
        let table = [
            ("http://127.0.0.1:8080/x", "`127.0.0.1` is a loopback address"),
            ("http://2130706433/", "`127.0.0.1` is a loopback address"),
            ("http://0x7f.1/", "`127.0.0.1` is a loopback address"),
            ("http://0177.0.0.1/", "`127.0.0.1` is a loopback address"),
            ("http://127.1/", "`127.0.0.1` is a loopback address"),
            ("http://127.0.0.1./", "`127.0.0.1` is a loopback address"),
            ("http://0/", "`0.0.0.0` is an unspecified address (this host)"),
            ("http://[::1]/", "`[::1]` is a loopback address"),
            ("http://[::]/", "`[::]` is an unspecified address"),
            ("http://[::ffff:127.0.0.1]/", "`[::ffff:7f00:1]` is IPv4 `127.0.0.1` in IPv6 form, a loopback address"),
            ("http://169.254.169.254/latest/meta-data/", "`169.254.169.254` is a link-local address (cloud metadata)"),
            ("http://0xa9fea9fe/", "`169.254.169.254` is a link-local address (cloud metadata)"),
            ("http://[fd00:ec2::254]/", "`[fd00:ec2::254]` is a private address (cloud metadata)"),
            ("http://100.100.100.200/", "`100.100.100.200` is a shared (carrier-grade NAT) address (cloud metadata)"),
            ("http://[fe80::1]/", "`[fe80::1]` is a link-local address"),
            (
                "http://[64:ff9b::169.254.169.254]/",
                "`[64:ff9b::a9fe:a9fe]` is IPv4 `169.254.169.254` in IPv6 form, a link-local address (cloud metadata)",
            ),
            ("http://metadata.google.internal/", "`metadata.google.internal` is the name of a cloud metadata service"),
            ("http://METADATA/", "`metadata` is the name of a cloud metadata service"),
        ];
        for (url, expected) in table {
            let message = refused(url).unwrap_or_else(|| panic!("{url} was not refused"));
            assert!(message.starts_with(expected), "{url}: {message}");
            assert!(message.ends_with("; allow it under `outbound.allow` to call it"), "{message}");
        }
        // Names are checked as they resolve, not here; public addresses pass.
        for url in ["http://localhost/", "https://siem.example/api", "http://8.8.8.8/", "http://[2001:4860::8888]/"] {
            assert_eq!(refused(url), None, "{url}");
        }
    }

    #[test]
    fn a_refusal_of_a_resolved_name_names_the_address() {
        let refusal = Policy::default().check_resolved("localhost", "::1".parse().unwrap()).unwrap_err();
        assert_eq!(
            refusal.to_string(),
            "`localhost` resolves to `::1`, which is a loopback address; allow it under `outbound.allow` to call it"
        );
    }

    #[tokio::test]
    async fn the_resolver_drops_refused_addresses() {
        let resolve = |policy: Policy, name: &str| {
            let resolver = Resolver::new(Arc::new(policy));
            resolver.resolve(name.parse().unwrap())
        };
        let error = resolve(Policy::default(), "localhost").await.err().expect("loopback refused");
        let refusal = refusal_in(error.as_ref()).expect("the error is the refusal");
        assert!(refusal.to_string().starts_with("`localhost` resolves to `"), "{refusal}");
        let kept: Vec<SocketAddr> = resolve(policy(&["127.0.0.1/32"]), "localhost").await.unwrap().collect();
        assert!(!kept.is_empty() && kept.iter().all(|a| a.ip() == IpAddr::from([127, 0, 0, 1])), "{kept:?}");
        let kept: Vec<SocketAddr> = resolve(policy(&["localhost"]), "localhost").await.unwrap().collect();
        assert!(!kept.is_empty(), "an allowed name keeps every address");
        let error = resolve(Policy::default(), "metadata.google.internal").await.err().expect("refused by name");
        assert!(refusal_in(error.as_ref()).is_some(), "{error}");
    }
}
