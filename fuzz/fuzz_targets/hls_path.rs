//! Fuzzes the HLS path validation: whatever a request names, an accepted file name stays a
//! single plain component inside the session folder, and an accepted id is 32 hex digits.
#![no_main]

use app::hls_path::{content_type, is_hex_id, ID_LEN};
use libfuzzer_sys::fuzz_target;
use std::path::{Component, Path};

fuzz_target!(|data: &[u8]| {
    let Ok(name) = std::str::from_utf8(data) else {
        return;
    };
    if content_type(name).is_some() {
        assert!(name.is_ascii() && !name.starts_with('.'));
        assert!(!name.contains(['/', '\\', '%', '\0']) && !name.contains(".."));
        let joined = Path::new("/sessions/abc").join(name);
        assert_eq!(joined.parent(), Some(Path::new("/sessions/abc")));
        assert!(joined.components().all(|c| matches!(c, Component::RootDir | Component::Normal(_))));
    }
    if is_hex_id(name) {
        assert_eq!(name.len(), ID_LEN);
        assert!(name.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    }
});
