//! A kept recording's note on disk (`kept.json` in its session folder): whose browser it
//! belongs to and until when it is kept, so that the promise "kept for 10 min" outlives a
//! server restart, and the same browser is offered it again after a page reload.

use super::ids::ClientId;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Name of the note inside a session folder.
pub const NOTE: &str = "kept.json";

/// A browser as a kept recording names it: a hash of its cookie id, so the folder never
/// holds a live credential.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Owner(String);

impl Owner {
    /// The owner key of the browser with cookie id `client`.
    pub fn of(client: &ClientId) -> Self {
        let digest = Sha256::digest(client.as_str().as_bytes());
        Owner(hex::encode(&digest[..16]))
    }
}

/// What the note says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Note {
    /// The browser that made the recording (none for a session without a cookie).
    pub owner: Option<Owner>,
    /// The network it came from (its recordings count against that network's quota).
    pub network: IpAddr,
    /// Seconds since the Unix epoch until which the folder is kept.
    pub until: u64,
}

impl Note {
    /// A note keeping the folder for `retention` from now.
    pub fn new(owner: Option<Owner>, network: IpAddr, retention: Duration) -> Self {
        Note {
            owner,
            network,
            until: unix_now().saturating_add(retention.as_secs()),
        }
    }

    /// How long the folder is still kept (zero once the time has passed).
    pub fn remaining(&self) -> Duration {
        Duration::from_secs(self.until.saturating_sub(unix_now()))
    }

    /// Writes the note into `dir` (under a temporary name, then renamed).
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        let text = serde_json::to_vec(self).map_err(std::io::Error::other)?;
        let partial = dir.join(format!("{NOTE}.part"));
        std::fs::write(&partial, text)?;
        std::fs::rename(&partial, dir.join(NOTE))
    }

    /// The note in `dir`, if there is a readable one.
    pub fn read(dir: &Path) -> Option<Self> {
        let text = std::fs::read(dir.join(NOTE)).ok()?;
        serde_json::from_slice(&text).ok()
    }
}

/// Seconds since the Unix epoch now (0 for a clock before it).
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_note_reads_back_and_names_no_cookie() {
        let dir = std::env::temp_dir().join(format!("hls-face-kept-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let client = ClientId::random();
        let note = Note::new(
            Some(Owner::of(&client)),
            IpAddr::from([192, 0, 2, 1]),
            Duration::from_secs(600),
        );
        note.write(&dir).unwrap();
        let text = std::fs::read_to_string(dir.join(NOTE)).unwrap();
        assert!(!text.contains(client.as_str()), "{text}");
        let back = Note::read(&dir).unwrap();
        assert_eq!(back, note);
        assert!(back.remaining() > Duration::from_secs(590));
        assert_eq!(Owner::of(&client), Owner::of(&client));
        assert_ne!(Owner::of(&client), Owner::of(&ClientId::random()));
        std::fs::write(dir.join(NOTE), b"{half").unwrap();
        assert!(Note::read(&dir).is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
