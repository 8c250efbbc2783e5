//! Ids that must never be mixed up, each its own type: a session's id (its URLs and
//! folder), its viewer token (a capability for its live stream only), its resume token
//! (lets the same browser's new socket take the session over) and a browser's cookie id.
//! All are 128 random bits as 32 lowercase hex digits (with a cluster node's prefix where a
//! proxy must route them): unguessable and path-safe.

use std::fmt;

/// 128 random bits as 32 lowercase hex digits.
fn random_hex() -> String {
    let mut bytes = [0u8; 16];
    // The OS RNG failing is not recoverable for a server handing out secrets.
    getrandom::fill(&mut bytes).expect("operating system random source failed");
    hex::encode(bytes)
}

macro_rules! random_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub struct $name(String);

        impl $name {
            /// A fresh random one.
            pub fn random() -> Self {
                $name(random_hex())
            }

            /// A fresh random one made by `node` of a cluster (`n2-…`; a plain one if
            /// `node` is empty), so a proxy routes the requests that carry it to that node.
            pub fn random_on(node: &str) -> Self {
                match node {
                    "" => Self::random(),
                    node => $name(format!("{node}-{}", random_hex())),
                }
            }

            /// Accepts only the shapes [`Self::random_on`] makes (`app::hls_path::is_id`).
            pub fn parse(text: &str) -> Option<Self> {
                app::hls_path::is_id(text).then(|| $name(text.to_string()))
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

random_id!(
    /// A streaming session: its playlist URL and its folder.
    SessionId
);
random_id!(
    /// A read-only viewer link's capability: the live stream of one session, nothing else.
    ViewerToken
);
random_id!(
    /// Lets a new socket of the same browser take over a session whose socket dropped.
    ResumeToken
);
random_id!(
    /// A browser session (the signed cookie): whose sessions and resumes these are.
    ClientId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_random_and_strictly_parsed() {
        let a = SessionId::random();
        assert_ne!(a, SessionId::random());
        assert_eq!(SessionId::parse(a.as_str()), Some(a.clone()));
        assert_eq!(SessionId::parse("../etc"), None);
        let on = ViewerToken::random_on("n2");
        assert!(on.as_str().starts_with("n2-"));
        assert_eq!(ViewerToken::parse(on.as_str()), Some(on));
        // The same text is a different thing as another type: only its own type parses
        // into a value the registry looks up by.
        let token = ResumeToken::parse(a.as_str()).unwrap();
        assert_eq!(token.as_str(), a.as_str());
    }
}
