//! Typed runtime settings: `Leptos.toml` plus environment overrides, with documented defaults;
//! loading, the environment overlay and validation here, one file per section group.

use crate::error::ServerError;
use leptos::config::LeptosOptions;
use serde::Deserialize;
use std::path::{Path, PathBuf};

mod auth;
mod channel;
mod checks;
mod limits;
mod pipeline;
mod site;

pub use auth::{AuthConfig, AuthMode, JwtAlgorithm};
pub use channel::{is_channel_name, redact_url, ChannelConfig, ChannelSource, Secret};
pub(crate) use checks::first_failure;
pub use limits::LimitsConfig;
pub use pipeline::{DetectorConfig, DetectorKind, HlsConfig, PipelineConfig, RecordingConfig};
use pipeline::{MOVED_KEYS, PIPELINE_SECTIONS};
pub use site::{SiteConfig, SiteEnv};

/// File read when no other is named.
pub const DEFAULT_CONFIG_FILE: &str = "Leptos.toml";

/// Prefix of the environment variables that override keys of every section but `[site]`.
pub const ENV_PREFIX: &str = "HLS_FACE_";

/// All runtime settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "kebab-case")]
pub struct Config {
    /// The settings file these came from, if any.
    #[serde(skip)]
    pub file: Option<PathBuf>,
    /// Where and what the HTTP server serves.
    pub site: SiteConfig,
    /// The ffmpeg / OpenCV pipeline.
    pub pipeline: PipelineConfig,
    /// Per-client and per-server limits.
    pub limits: LimitsConfig,
    /// Who may stream.
    pub auth: AuthConfig,
    /// The operator's camera channels (`[[channel]]` tables).
    #[serde(rename = "channel")]
    pub channels: Vec<ChannelConfig>,
}

/// `[site]` keys and the Leptos environment variables that override them.
const SITE_ENV: [(&str, &str); 6] = [
    ("addr", "LEPTOS_SITE_ADDR"),
    ("root", "LEPTOS_SITE_ROOT"),
    ("pkg-dir", "LEPTOS_SITE_PKG_DIR"),
    ("output-name", "LEPTOS_OUTPUT_NAME"),
    ("env", "LEPTOS_ENV"),
    ("reload-port", "LEPTOS_RELOAD_PORT"),
];

impl Config {
    /// Reads `path`, or else the first [`DEFAULT_CONFIG_FILE`] found in the working folder
    /// or beside the executable (`target/release/hls-face` finds the repository's), and
    /// applies the process environment. Relative paths in the settings (site root, model,
    /// runtime folder) are taken relative to the folder of the file read, so the binary
    /// works from any working folder; with no file at all, the defaults are relative to the
    /// working folder.
    pub fn load(path: Option<&Path>) -> Result<Self, ServerError> {
        let file = match path {
            Some(p) => Some(p.to_owned()),
            None => find_default_file(),
        };
        let text = match &file {
            Some(f) => std::fs::read_to_string(f).map_err(|source| ServerError::ConfigRead {
                path: f.clone(),
                source,
            })?,
            None => String::new(),
        };
        let mut config = Self::from_parts(&text, std::env::vars())?;
        let base = file
            .as_deref()
            .and_then(Path::parent)
            .filter(|dir| !dir.as_os_str().is_empty())
            .map(Path::to_path_buf);
        if let Some(base) = base {
            config.resolve_relative_to(&base);
        }
        config.file = file;
        Ok(config)
    }

    /// Makes the relative paths of the settings relative to `base`.
    pub fn resolve_relative_to(&mut self, base: &Path) {
        let fix = |p: &Path| -> PathBuf {
            if p.is_relative() {
                base.join(p)
            } else {
                p.to_path_buf()
            }
        };
        self.site.root = fix(Path::new(&self.site.root))
            .to_string_lossy()
            .into_owned();
        self.pipeline.detector.model = fix(&self.pipeline.detector.model);
        self.pipeline.runtime_dir = fix(&self.pipeline.runtime_dir);
        self.pipeline.detector.cascade = fix(&self.pipeline.detector.cascade);
        self.site.tls_cert = self.site.tls_cert.as_deref().map(fix);
        self.site.tls_key = self.site.tls_key.as_deref().map(fix);
        self.site.csrf_key_file = self.site.csrf_key_file.as_deref().map(fix);
        self.auth.jwt_key_file = self.auth.jwt_key_file.as_deref().map(fix);
        for channel in &mut self.channels {
            let file = channel.source.expose().strip_prefix("file:").map(Path::new);
            if let Some(path) = file.filter(|p| p.is_relative()) {
                channel.source = Secret::new(format!("file:{}", fix(path).display()));
            }
        }
    }

    /// Checks that the built site is where the settings say (the page's wasm bundle, its
    /// script and hls.js); the reason, with what to do, if not.
    pub fn check_site(&self) -> Result<(), ServerError> {
        let root = Path::new(&self.site.root);
        let pkg = root.join(&self.site.pkg_dir);
        let name = &self.site.output_name;
        let needed = [
            pkg.join(format!("{name}.js")),
            pkg.join(format!("{name}.wasm")),
            root.join("vendor/hls.min.js"),
        ];
        match needed.iter().find(|f| !f.is_file()) {
            None => Ok(()),
            Some(missing) => Err(ServerError::Config(format!(
                "the built site is incomplete: {} is missing (site root {}{}). Build it with \
                 `cargo leptos build --release` in the repository, or point [site] root / \
                 LEPTOS_SITE_ROOT at a built site",
                missing.display(),
                root.display(),
                match &self.file {
                    Some(f) => format!(", from {}", f.display()),
                    None => ", no settings file found".into(),
                }
            ))),
        }
    }

    /// Builds the settings from TOML text and environment pairs (pure, for tests).
    pub fn from_parts(
        toml_text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ServerError> {
        let root = Self::merged_table(toml_text, env)?;
        // The key a wrong value is under, in the message: "limits.max-sessions: invalid
        // type: string \"many\", expected usize".
        let config: Config =
            serde_path_to_error::deserialize(toml::Value::Table(root)).map_err(|e| {
                let path = e.path().to_string();
                let path = PIPELINE_SECTIONS
                    .iter()
                    .find_map(|section| {
                        path.strip_prefix("pipeline.")
                            .filter(|rest| rest.starts_with(&format!("{section}.")))
                    })
                    .map_or(path.clone(), str::to_string);
                ServerError::Config(format!("{path}: {}", e.into_inner()))
            })?;
        config.validate()?;
        Ok(config)
    }

    /// The settings as one TOML table: the file's text with the environment's overrides
    /// applied and the pipeline sections nested (what [`Config::from_parts`] reads, and
    /// what a reload compares key by key).
    pub fn merged_table(
        toml_text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<toml::Table, ServerError> {
        let mut root: toml::Table = toml_text
            .parse()
            .map_err(|e: toml::de::Error| ServerError::Config(e.to_string()))?;
        for (name, value) in env {
            let Some((section, key)) = env_target(&name) else {
                continue;
            };
            let table = root
                .entry(section)
                .or_insert_with(|| toml::Value::Table(Default::default()));
            let toml::Value::Table(table) = table else {
                return Err(ServerError::Config(format!("[{name}] is not a table")));
            };
            table.insert(key, env_value(&value));
        }
        nest_pipeline_sections(&mut root)?;
        Ok(root)
    }

    /// Checks every section's values (each section owns its checks); the first failure is
    /// the error, with the key it names.
    fn validate(&self) -> Result<(), ServerError> {
        let failure = self
            .pipeline
            .check()
            .and_then(|()| self.site.check())
            .and_then(|()| self.limits.check())
            .and_then(|()| self.auth.check());
        failure.map_err(|why| ServerError::Config(why.to_string()))?;
        channel::check_all(&self.channels).map_err(ServerError::Config)
    }

    /// The Leptos options for rendering and serving the site.
    pub fn leptos_options(&self) -> LeptosOptions {
        let env = match self.site.env {
            SiteEnv::Dev => leptos::config::Env::DEV,
            SiteEnv::Prod => leptos::config::Env::PROD,
        };
        LeptosOptions::builder()
            .output_name(self.site.output_name.as_str())
            .site_root(self.site.root.as_str())
            .site_pkg_dir(self.site.pkg_dir.as_str())
            .site_addr(self.site.addr)
            .reload_port(self.site.reload_port)
            .env(env)
            .build()
    }
}

/// The settings file used when none is named: `Leptos.toml` in the working folder, else in
/// the executable's folder or one of its parents.
fn find_default_file() -> Option<PathBuf> {
    let here = PathBuf::from(DEFAULT_CONFIG_FILE);
    if here.is_file() {
        return Some(here);
    }
    let exe = std::env::current_exe().ok()?;
    exe.ancestors()
        .skip(1)
        .map(|dir| dir.join(DEFAULT_CONFIG_FILE))
        .find(|f| f.is_file())
}

/// Moves the top-level `[hls]`, `[detector]` and `[recording]` tables into `[pipeline]`,
/// where the code receives them; a key that moved out of `[pipeline]` is an error that
/// says where it went.
fn nest_pipeline_sections(root: &mut toml::Table) -> Result<(), ServerError> {
    if let Some(toml::Value::Table(pipeline)) = root.get("pipeline") {
        let moved = MOVED_KEYS
            .iter()
            .find(|(old, _, _)| pipeline.get(*old).is_some_and(|v| !v.is_table()));
        if let Some((old, section, key)) = moved {
            return Err(ServerError::Config(format!(
                "pipeline.{old} is now [{section}] {key} (environment: {})",
                env_name(section, key)
            )));
        }
    }
    for section in PIPELINE_SECTIONS {
        let Some(table) = root.remove(section) else {
            continue;
        };
        let pipeline = root
            .entry("pipeline")
            .or_insert_with(|| toml::Value::Table(Default::default()));
        let toml::Value::Table(pipeline) = pipeline else {
            return Err(ServerError::Config("[pipeline] is not a table".into()));
        };
        pipeline.insert(section.into(), table);
    }
    Ok(())
}

/// The variable that overrides `key` of `[section]` (what [`env_target`] reads back).
fn env_name(section: &str, key: &str) -> String {
    format!("{ENV_PREFIX}{section}_{key}")
        .to_ascii_uppercase()
        .replace('-', "_")
}

/// Maps an environment variable name to the `(section, key)` it overrides.
fn env_target(name: &str) -> Option<(String, String)> {
    if let Some((key, _)) = SITE_ENV.iter().find(|(_, var)| *var == name) {
        return Some(("site".into(), (*key).into()));
    }
    let rest = name.strip_prefix(ENV_PREFIX)?;
    if rest == "CONFIG" {
        return None;
    }
    let (section, key) = rest.split_once('_')?;
    Some((
        section.to_ascii_lowercase(),
        key.to_ascii_lowercase().replace('_', "-"),
    ))
}

/// An environment value as TOML: numbers, booleans, floats and `[…]` lists keep their
/// type, anything else is a string.
fn env_value(raw: &str) -> toml::Value {
    // A list is written as TOML: HLS_FACE_SITE_ALLOWED_HOSTS='["cam.example"]'.
    if raw.trim_start().starts_with('[') {
        if let Ok(table) = format!("v = {raw}").parse::<toml::Table>() {
            if let Some(v) = table.get("v") {
                return v.clone();
            }
        }
    }
    if let Ok(v) = raw.parse::<i64>() {
        return toml::Value::Integer(v);
    }
    if let Ok(v) = raw.parse::<f64>() {
        return toml::Value::Float(v);
    }
    if let Ok(v) = raw.parse::<bool>() {
        return toml::Value::Boolean(v);
    }
    toml::Value::String(raw.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_shipped_leptos_toml_equals_the_defaults() {
        let text = include_str!("../../../Leptos.toml");
        let from_file = Config::from_parts(text, []).unwrap();
        let defaults = Config::default();
        assert_eq!(format!("{from_file:?}"), format!("{defaults:?}"));
    }

    #[test]
    fn leptos_env_vars_move_the_site() {
        let c = Config::from_parts(
            "",
            env(&[
                ("LEPTOS_SITE_ADDR", "127.0.0.1:4123"),
                ("LEPTOS_ENV", "DEV"),
            ]),
        )
        .unwrap();
        assert_eq!(c.site.addr.port(), 4123);
        assert_eq!(c.leptos_options().env, leptos::config::Env::DEV);
        assert_eq!(&*c.leptos_options().site_root, "target/site");
        let prod = Config::from_parts("[site]\nenv = \"production\"\n", env(&[])).unwrap();
        assert_eq!(prod.site.env, SiteEnv::Prod);
        assert!(
            Config::from_parts("", env(&[("LEPTOS_ENV", "staging")])).is_err(),
            "an unknown mode is an error, not production"
        );
    }

    #[test]
    fn prefixed_env_vars_override_sections() {
        let c = Config::from_parts(
            "[limits]\nmax-sessions = 3\n",
            env(&[
                ("HLS_FACE_LIMITS_MAX_CHUNK_BYTES", "2048"),
                ("HLS_FACE_PIPELINE_RUNTIME_DIR", "/tmp/x"),
                ("HLS_FACE_DETECTOR_SCALE_FACTOR", "1.3"),
                ("HLS_FACE_HLS_PART_SECONDS", "0.2"),
                ("HLS_FACE_RECORDING_MAX_SECS", "60"),
                ("HLS_FACE_CONFIG", "ignored.toml"),
                ("UNRELATED", "1"),
            ]),
        )
        .unwrap();
        assert_eq!(c.limits.max_sessions, 3);
        assert_eq!(c.limits.max_chunk_bytes, 2048);
        assert_eq!(c.pipeline.runtime_dir, PathBuf::from("/tmp/x"));
        assert_eq!(c.pipeline.detector.scale_factor, 1.3);
        assert_eq!(c.pipeline.hls.part_seconds, 0.2);
        assert_eq!(c.pipeline.recording.max_secs, 60);
        let c = Config::from_parts(
            "",
            env(&[("HLS_FACE_SITE_ALLOWED_HOSTS", "[\"cam.example\"]")]),
        )
        .unwrap();
        assert_eq!(c.site.allowed_hosts, vec!["cam.example".to_string()]);
    }

    #[test]
    fn relative_paths_follow_the_settings_file() {
        let dir = std::env::temp_dir().join(format!("hls-face-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("Leptos.toml");
        std::fs::write(&file, "[detector]\nmodel = \"m/x.onnx\"\n").unwrap();
        let c = Config::load(Some(&file)).unwrap();
        assert_eq!(c.pipeline.detector.model, dir.join("m/x.onnx"));
        assert_eq!(c.site.root, dir.join("target/site").to_string_lossy());
        assert_eq!(c.pipeline.runtime_dir, dir.join("target/hls-face-runtime"));
        assert_eq!(
            c.pipeline.detector.cascade,
            DetectorConfig::default().cascade,
            "absolute paths stay"
        );
        let err = c.check_site().unwrap_err().to_string();
        assert!(err.contains("hls-face.js is missing"), "{err}");
        assert!(err.contains("cargo leptos build"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn sections_are_top_level_and_moved_keys_say_where_they_went() {
        let c = Config::from_parts(
            "[hls]\nsegment-seconds = 2.0\n[detector]\nkind = \"haar\"\n[recording]\nmax-secs = 0\n",
            [],
        )
        .unwrap();
        assert_eq!(c.pipeline.hls.segment_seconds, 2.0);
        assert_eq!(c.pipeline.detector.kind, DetectorKind::Haar);
        assert!(!c.pipeline.records());
        for (text, env_vars, says) in [
            (
                "[pipeline]\ndetector = \"haar\"\n",
                vec![],
                "[detector] kind",
            ),
            (
                "",
                vec![("HLS_FACE_PIPELINE_SEGMENT_SECONDS", "2")],
                "HLS_FACE_HLS_SEGMENT_SECONDS",
            ),
            (
                "[pipeline]\nrecording-max-secs = 5\n",
                vec![],
                "HLS_FACE_RECORDING_MAX_SECS",
            ),
        ] {
            let err = Config::from_parts(text, env(&env_vars))
                .unwrap_err()
                .to_string();
            assert!(err.contains(says), "{err}");
        }
    }

    #[test]
    fn typos_and_bad_values_are_errors() {
        assert!(Config::from_parts("[limits]\nmax-sesions = 3\n", []).is_err());
        assert!(Config::from_parts("", env(&[("HLS_FACE_LIMITS_NOPE", "1")])).is_err());
        assert!(Config::from_parts("[limits]\nmax-cpu-percent = 0\n", []).is_err());
        assert!(Config::from_parts("[detector]\nscale-factor = 1.0\n", []).is_err());
        assert!(Config::from_parts("[hls]\nnope = 1\n", []).is_err());
        assert!(Config::from_parts("not toml [", []).is_err());
        // The message names the key, as the sections are written in the file.
        let err = Config::from_parts("[limits]\nmax-sessions = \"many\"\n", [])
            .unwrap_err()
            .to_string();
        assert!(err.contains("limits.max-sessions: invalid type"), "{err}");
        let err = Config::from_parts("[hls]\nsegment-seconds = \"x\"\n", [])
            .unwrap_err()
            .to_string();
        assert!(err.contains("hls.segment-seconds:"), "{err}");
    }
}
