//! `[[channel]]`: the operator's camera channels. Each names a source the server reads
//! itself (an RTSP camera, an SRT publisher such as OBS, a file played in a loop), never
//! one a browser supplies; its processed stream is served at `/channel/<name>/`.

use serde::Deserialize;
use std::fmt;
use std::path::PathBuf;

/// Longest channel name.
pub const NAME_MAX: usize = 32;

/// A secret from the settings (a camera password inside an RTSP URL, an SRT passphrase):
/// printed as `***` by `Debug`, so no log line or error message carries it.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(text: impl Into<String>) -> Self {
        Secret(text.into())
    }

    /// The secret itself, for the one place that hands it to the source.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "***" })
    }
}

/// One `[[channel]]` table, as written.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ChannelConfig {
    /// `/channel/<name>`: 1 to 32 lowercase letters, digits and `-`.
    pub name: String,
    /// `rtsp://[user:password@]host[:port]/path` (pull from a camera),
    /// `srt://[address]:port` (wait for a publisher, with `passphrase`), or
    /// `file:path` (a local file played in a loop, for demos).
    pub source: Secret,
    /// The SRT publisher's passphrase (10 to 79 characters; SRT encrypts the stream with
    /// it, so a publisher without it is refused in the handshake).
    #[serde(default)]
    pub passphrase: Option<Secret>,
    /// Faces pixelated (true, the default: channels are shown to the public) or boxed.
    #[serde(default = "yes")]
    pub privacy: bool,
    /// Output size: every source is scaled to it (a 4K camera included).
    #[serde(default = "default_width")]
    pub width: u32,
    #[serde(default = "default_height")]
    pub height: u32,
    /// Output frame rate (default: `[hls] frame-rate`).
    #[serde(default)]
    pub frame_rate: Option<u32>,
    /// The cluster node that runs the channel (its `[site] node`); the others leave it to
    /// that node, and nginx routes the channel's stream there. Unset: every server reading
    /// these settings runs it (one server; in a cluster, name a node).
    #[serde(default)]
    pub node: Option<String>,
}

fn yes() -> bool {
    true
}
fn default_width() -> u32 {
    640
}
fn default_height() -> u32 {
    480
}

/// Where a channel's media comes from, parsed from [`ChannelConfig::source`].
#[derive(Clone, PartialEq)]
pub enum ChannelSource {
    /// Pulled from an RTSP camera (credentials in the URL).
    Rtsp { url: Secret },
    /// A publisher pushes SRT to this address (`0.0.0.0:9000`).
    Srt {
        bind: std::net::SocketAddr,
        passphrase: Secret,
    },
    /// A local file, played in a loop at its own pace.
    File(PathBuf),
}

impl fmt::Debug for ChannelSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

impl ChannelSource {
    /// What the source is, without its secrets (for logs and the Channels page).
    pub fn describe(&self) -> String {
        match self {
            ChannelSource::Rtsp { url } => redact_url(url.expose()),
            ChannelSource::Srt { bind, .. } => format!("SRT publisher on port {}", bind.port()),
            ChannelSource::File(path) => format!("file {} (loop)", path.display()),
        }
    }

    /// The protocol, for `/metrics` and the page.
    pub fn kind(&self) -> &'static str {
        match self {
            ChannelSource::Rtsp { .. } => "rtsp",
            ChannelSource::Srt { .. } => "srt",
            ChannelSource::File(_) => "file",
        }
    }
}

/// `url` without the user and password part (`rtsp://u:p@cam/x` → `rtsp://cam/x`).
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let rest = rest.split_once('?').map_or(rest, |(r, _)| r);
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    format!("{scheme}://{host}{path}")
}

/// Whether `name` can name a channel (it travels in paths and nginx's routing pattern).
pub fn is_channel_name(name: &str) -> bool {
    (1..=NAME_MAX).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
}

impl ChannelConfig {
    /// Whether the server named `node` (`[site] node`, empty without one) runs this channel.
    pub fn runs_on(&self, node: &str) -> bool {
        self.node.as_deref().is_none_or(|n| n == node)
    }

    /// Whether two channels may run on one server (neither names a node, or the same).
    fn may_share_a_server(&self, other: &ChannelConfig) -> bool {
        match (&self.node, &other.node) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        }
    }

    /// The parsed source, or what is wrong with it (naming the channel, never the secret).
    pub fn parsed_source(&self) -> Result<ChannelSource, String> {
        let name = &self.name;
        let text = self.source.expose();
        if let Some(path) = text.strip_prefix("file:") {
            if path.is_empty() {
                return Err(format!("channel {name}: source \"file:\" needs a path"));
            }
            if self.passphrase.is_some() {
                return Err(format!(
                    "channel {name}: a passphrase is for srt:// sources only"
                ));
            }
            return Ok(ChannelSource::File(PathBuf::from(path)));
        }
        if text.starts_with("rtsp://") || text.starts_with("rtsps://") {
            let host = redact_url(text);
            let host_part = host.split_once("://").map_or("", |(_, r)| r);
            if host_part.is_empty() || host_part.starts_with('/') {
                return Err(format!("channel {name}: the RTSP URL has no host"));
            }
            if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(format!("channel {name}: the RTSP URL contains spaces"));
            }
            if self.passphrase.is_some() {
                return Err(format!(
                    "channel {name}: a passphrase is for srt:// sources only (an RTSP \
                     camera's password goes in its URL)"
                ));
            }
            return Ok(ChannelSource::Rtsp {
                url: self.source.clone(),
            });
        }
        if let Some(rest) = text.strip_prefix("srt://") {
            let rest = rest.trim_end_matches('/');
            let bind = if rest.starts_with(':') {
                format!("0.0.0.0{rest}")
            } else {
                rest.to_string()
            };
            let bind: std::net::SocketAddr = bind.parse().map_err(|_| {
                format!(
                    "channel {name}: an SRT source is srt://ADDRESS:PORT or srt://:PORT \
                     (the address and port this server listens on for the publisher), \
                     with no query; got {}",
                    redact_url(text)
                )
            })?;
            if bind.port() == 0 {
                return Err(format!("channel {name}: the SRT port must not be 0"));
            }
            let Some(passphrase) = self.passphrase.clone() else {
                return Err(format!(
                    "channel {name}: an srt:// source needs a passphrase (10 to 79 \
                     characters) so only the publisher who knows it can push"
                ));
            };
            let len = passphrase.expose().chars().count();
            let plain = passphrase
                .expose()
                .bytes()
                .all(|b| b.is_ascii_graphic() && !b"&?=#%+:".contains(&b));
            if !(10..=79).contains(&len) || !plain {
                return Err(format!(
                    "channel {name}: the SRT passphrase must be 10 to 79 printable ASCII \
                     characters without spaces or & ? = # % + :"
                ));
            }
            return Ok(ChannelSource::Srt { bind, passphrase });
        }
        Err(format!(
            "channel {name}: source must start with rtsp://, rtsps://, srt:// or file: (got {})",
            redact_url(text)
        ))
    }

    /// The channel's checks; the reason if one fails.
    pub fn check(&self) -> Result<ChannelSource, String> {
        let name = &self.name;
        if !is_channel_name(name) {
            return Err(format!(
                "channel name {name:?} must be 1 to {NAME_MAX} lowercase letters, digits and \
                 '-' (not first)"
            ));
        }
        if let Some(node) = self
            .node
            .as_deref()
            .filter(|n| !app::hls_path::is_node_name(n))
        {
            return Err(format!(
                "channel {name}: node {node:?} must be a node name (1 to 16 lowercase letters \
                 and digits, as [site] node)"
            ));
        }
        let even = |v: u32| v.is_multiple_of(2);
        if !(64..=1920).contains(&self.width)
            || !(64..=1080).contains(&self.height)
            || !even(self.width)
            || !even(self.height)
        {
            return Err(format!(
                "channel {name}: width must be 64..=1920 and height 64..=1080, both even"
            ));
        }
        if let Some(fps) = self.frame_rate {
            if !(1..=60).contains(&fps) {
                return Err(format!("channel {name}: frame-rate must be 1..=60"));
            }
        }
        self.parsed_source()
    }
}

/// Checks every channel and that names and SRT ports are not shared.
pub fn check_all(channels: &[ChannelConfig]) -> Result<(), String> {
    let mut names = std::collections::HashSet::new();
    // (port, channel) of the SRT listeners so far.
    let mut ports: Vec<(u16, &ChannelConfig)> = Vec::new();
    for channel in channels {
        let source = channel.check()?;
        if !names.insert(channel.name.as_str()) {
            return Err(format!("two channels are named {}", channel.name));
        }
        if let ChannelSource::Srt { bind, .. } = source {
            let port = bind.port();
            // Channels of different nodes may listen on the same port of their own hosts.
            if ports
                .iter()
                .any(|(p, other)| *p == port && other.may_share_a_server(channel))
            {
                return Err(format!(
                    "channel {}: SRT port {port} is taken by another channel",
                    channel.name
                ));
            }
            ports.push((port, channel));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channel(source: &str, passphrase: Option<&str>) -> ChannelConfig {
        ChannelConfig {
            name: "door".into(),
            source: Secret::new(source),
            passphrase: passphrase.map(Secret::new),
            privacy: true,
            node: None,
            width: 640,
            height: 480,
            frame_rate: None,
        }
    }

    #[test]
    fn sources_parse_and_describe_without_secrets() {
        let rtsp = channel("rtsp://admin:hunter2@10.0.0.5:554/stream1?tcp", None);
        let source = rtsp.check().unwrap();
        assert_eq!(source.describe(), "rtsp://10.0.0.5:554/stream1");
        assert!(!format!("{source:?} {rtsp:?}").contains("hunter2"));
        let srt = channel("srt://:9000", Some("correct-horse-battery"));
        let ChannelSource::Srt { bind, .. } = srt.check().unwrap() else {
            panic!("srt")
        };
        assert_eq!(bind.port(), 9000);
        assert!(!format!("{srt:?}").contains("horse"));
        assert!(matches!(
            channel("file:clips/demo.mp4", None).check().unwrap(),
            ChannelSource::File(_)
        ));
    }

    #[test]
    fn bad_channels_are_refused_without_echoing_secrets() {
        for (c, says) in [
            (channel("http://evil/x", None), "must start with"),
            (channel("srt://:9000", None), "needs a passphrase"),
            (channel("srt://:9000", Some("short")), "10 to 79"),
            (channel("srt://:9000", Some("has spaces in it")), "10 to 79"),
            (channel("srt://:9000", Some("amp&ersand=x1")), "10 to 79"),
            (
                channel("srt://host:9000?passphrase=x", Some("long enough pass")),
                "srt://ADDRESS:PORT",
            ),
            (channel("rtsp://u:p@/x", None), "no host"),
            (
                channel("rtsp://cam/x", Some("long enough pass")),
                "srt:// sources only",
            ),
            (channel("file:", None), "needs a path"),
        ] {
            let err = c.check().unwrap_err();
            assert!(err.contains(says), "{err}");
            assert!(!err.contains("passphrase=x"), "{err}");
        }
        let mut bad_name = channel("file:x.mp4", None);
        bad_name.name = "Front Door".into();
        assert!(bad_name.check().is_err());
        let mut odd = channel("file:x.mp4", None);
        odd.width = 641;
        assert!(odd.check().is_err());
        let a = channel("srt://:9000", Some("long-enough-pass"));
        let mut b = a.clone();
        b.name = "yard".into();
        assert!(check_all(&[a.clone(), b])
            .unwrap_err()
            .contains("port 9000"));
        assert!(check_all(&[a.clone(), a])
            .unwrap_err()
            .contains("two channels"));
    }

    #[test]
    fn a_channel_runs_on_its_node_only() {
        let mut a = channel("srt://:9000", Some("long-enough-pass"));
        assert!(a.runs_on("") && a.runs_on("n2"), "no node: every server");
        a.node = Some("n1".into());
        assert!(a.runs_on("n1") && !a.runs_on("n2") && !a.runs_on(""));
        // Two nodes may each listen on port 9000 of their own host; one node may not.
        let mut b = a.clone();
        b.name = "yard".into();
        b.node = Some("n2".into());
        assert!(check_all(&[a.clone(), b.clone()]).is_ok());
        b.node = None;
        assert!(check_all(&[a.clone(), b]).is_err(), "unset runs on n1 too");
        a.node = Some("Node 1".into());
        assert!(a.check().unwrap_err().contains("node"));
    }

    #[test]
    fn urls_lose_their_credentials_and_query() {
        assert_eq!(redact_url("rtsp://u:p@h/a?x=1"), "rtsp://h/a");
        assert_eq!(redact_url("rtsp://h:8554/a"), "rtsp://h:8554/a");
        assert_eq!(redact_url("srt://h:1?passphrase=zz"), "srt://h:1");
        assert_eq!(redact_url("rtsp://a@b@h/p"), "rtsp://h/p");
    }
}
