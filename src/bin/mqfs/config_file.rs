//! The configuration file (`-o config=/etc/mqfs.toml`): mount-wide limits, the
//! configuration of the root group (which new groups copy), and presets by path.
//!
//! ```toml
//! [limits]
//! memory = "1G"          # ceiling on all retained history
//! max_message = "16M"    # largest message one write may publish
//! threads = 4            # FUSE worker threads
//!
//! [defaults]             # the root group's ctl settings; new groups copy their parent's
//! replay = "off"
//!
//! [[preset]]             # groups created at or below logs/ start with these
//! path = "logs"
//! replay = "all"
//! depth = "64M"
//! ```
//!
//! Unknown keys and bad values are errors naming the file, the line and the key. The file
//! is read before the other `-o` options, which override it.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use crate::options::{MAX_MESSAGE_VALUES, Settings, ctl_setting, parse_max_message, parse_threads};
use mqfs::engine::config::parse_size;
use mqfs::engine::ctl::Command;
use toml::Spanned;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    limits: LimitsSection,
    #[serde(default)]
    defaults: Section,
    #[serde(default)]
    preset: Vec<Section>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct LimitsSection {
    memory: Option<Size>,
    max_message: Option<MaxMessage>,
    threads: Option<Threads>,
}

/// A table of ctl settings (`replay = "all"`, `depth = "64M"`, ...), kept with the spans
/// of its keys and values so that errors can name their line.
type Section = BTreeMap<Spanned<String>, Spanned<toml::Value>>;

/// Reads `path` into `settings`: what the file sets replaces the current values.
pub fn load(path: &Path, settings: &mut Settings) -> Result<(), String> {
    let shown = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| format!("config file {shown}: {e}"))?;
    let at = |offset: usize, message: &str| located(&shown, &text, offset, message);
    let file: FileConfig = toml::from_str(&text).map_err(|e| {
        let message = e.message().trim().replace('\n', "; ").replace("unknown field", "unknown key");
        match e.span() {
            Some(span) => at(span.start, &message),
            None => format!("config file {shown}: {message}"),
        }
    })?;

    if let Some(memory) = file.limits.memory {
        settings.memory = Some(memory.0);
    }
    if let Some(max) = file.limits.max_message {
        settings.max_message = Some(max.0);
    }
    if let Some(threads) = file.limits.threads {
        settings.threads = threads.0;
    }
    for command in commands(&file.defaults, &at)? {
        command.configure(&mut settings.root);
    }
    for (index, preset) in file.preset.iter().enumerate() {
        let mut preset = preset.clone();
        let key = Spanned::new(0..0, "path".to_string());
        let Some((path_key, path)) = preset.remove_entry(&key) else {
            let line = text.match_indices("[[preset]]").nth(index).map_or(0, |(i, _)| i);
            return Err(at(line, "this preset has no path (path = \"logs\")"));
        };
        let Some(path_text) = path.get_ref().as_str() else {
            return Err(at(path_key.span().start, "path is a string such as \"logs\""));
        };
        settings
            .presets
            .add(path_text, commands(&preset, &at)?)
            .map_err(|e| at(path_key.span().start, &e))?;
    }
    settings.config = Some(path.to_path_buf());
    Ok(())
}

/// The ctl commands a section's settings stand for.
fn commands(section: &Section, at: &impl Fn(usize, &str) -> String) -> Result<Vec<Command>, String> {
    let mut commands = Vec::new();
    for (key, value) in section {
        let word = match value.get_ref() {
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(n) => n.to_string(),
            other => other.to_string(),
        };
        match ctl_setting(key.get_ref(), &word) {
            Some(Ok(command)) => commands.push(command),
            Some(Err(reason)) => return Err(at(value.span().start, &reason)),
            None => return Err(at(key.span().start, &format!("unknown key `{}`", key.get_ref()))),
        }
    }
    Ok(commands)
}

/// `FILE:LINE: KEY: MESSAGE` for an error at byte `at` of `text` (the key is left out when
/// the message names it already).
fn located(file: &impl fmt::Display, text: &str, at: usize, message: &str) -> String {
    let at = at.min(text.len());
    let line_number = text[..at].matches('\n').count() + 1;
    let start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let line = text[start..].lines().next().unwrap_or("");
    let key = match line.split_once('=') {
        Some((key, _)) if !line.trim_start().starts_with('[') => key.trim(),
        _ => "",
    };
    if key.is_empty() || message.contains(&format!("`{key}`")) {
        format!("{file}:{line_number}: {message}")
    } else {
        format!("{file}:{line_number}: {key}: {message}")
    }
}

// Limits, each checked as the matching -o option is.

struct Size(u64);
struct MaxMessage(u64);
struct Threads(usize);

/// Accepts a TOML string or non-negative integer and hands it to `parse` as text.
struct Word<F> {
    expected: &'static str,
    parse: F,
}

impl<'de, T, F: FnOnce(&str, bool) -> Option<T>> Visitor<'de> for Word<F> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expected)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        (self.parse)(v, false)
            .ok_or_else(|| E::custom(format!("bad value {v:?}: expected {}", self.expected)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        (self.parse)(&v.to_string(), true)
            .ok_or_else(|| E::custom(format!("bad value {v}: expected {}", self.expected)))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        self.visit_i64(v.try_into().unwrap_or(i64::MAX))
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let expected = "a size in bytes such as \"512M\", \"2G\" or 1048576";
        d.deserialize_any(Word { expected, parse: |w: &str, _| parse_size(w).filter(|&n| n > 0) }).map(Size)
    }
}

impl<'de> Deserialize<'de> for MaxMessage {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(Word { expected: MAX_MESSAGE_VALUES, parse: |w: &str, _| parse_max_message(w) })
            .map(MaxMessage)
    }
}

impl<'de> Deserialize<'de> for Threads {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let expected = "a number of threads from 1 to 64";
        d.deserialize_any(Word { expected, parse: |w: &str, number| parse_threads(w).filter(|_| number) })
            .map(Threads)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mqfs::engine::GroupConfig;
    use mqfs::engine::config::{DataMode, Depth, Replay};
    use mqfs::engine::presets::Presets;

    /// The command setting `name` to `value`.
    fn set(name: &str, value: &str) -> Command {
        Command::set(name, value).expect("a setting").expect("a value of it")
    }

    fn load_text(text: &str) -> Result<Settings, String> {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("mqfs-config-test-{}-{n}.toml", std::process::id()));
        std::fs::write(&path, text).unwrap();
        let mut settings = Settings::default();
        let result = load(&path, &mut settings).map(|()| settings);
        std::fs::remove_file(&path).unwrap();
        result.map_err(|e| e.replace(&path.display().to_string(), "FILE"))
    }

    #[test]
    fn a_full_file_sets_limits_defaults_and_presets() {
        let settings = load_text(
            "# comment\n[limits]\nmemory = \"1G\"\nmax_message = 1048576\nthreads = 2\n\n\
             [defaults]\ndata = \"coalesce\"\nreplay = \"last\"\ndepth = 100\n\n\
             [[preset]]\npath = \"logs\"\nreplay = \"all\"\ndepth = \"64M\"\n\n\
             [[preset]]\npath = \"logs/raw\"\ndata = \"message\"\n",
        )
        .unwrap();
        assert_eq!(settings.memory, Some(1 << 30));
        assert_eq!(settings.max_message, Some(1 << 20));
        assert_eq!(settings.threads, 2);
        let mut root = GroupConfig::default();
        (root.data, root.replay, root.depth) = (DataMode::Coalesce, Replay::Last, Depth::Messages(100));
        assert_eq!(settings.root, root);
        let mut presets = Presets::default();
        presets.add("logs", vec![set("depth", "64M"), set("replay", "all")]).unwrap();
        presets.add("logs/raw", vec![set("data", "message")]).unwrap();
        assert_eq!(settings.presets, presets);
    }

    #[test]
    fn an_empty_file_changes_nothing_but_the_config_path() {
        let settings = load_text("").unwrap();
        assert_eq!(Settings { config: None, ..settings }, Settings::default());
    }

    #[test]
    fn errors_name_the_line_and_the_key() {
        for (text, want) in [
            ("[limits]\nmemroy = \"1G\"\n", "FILE:2: unknown key `memroy`"),
            ("[limits]\n\nmemory = \"lots\"\n", "FILE:3: memory: bad value \"lots\""),
            ("[limits]\nthreads = 0\n", "FILE:2: threads: bad value 0"),
            ("[limits]\nmax_message = \"4G\"\n", "FILE:2: max_message: bad value \"4G\": expected a size"),
            ("[limits]\nmax_message = 4294967296\n", "FILE:2: max_message: bad value 4294967296"),
            ("[limits]\nthreads = \"4\"\n", "FILE:2: threads: bad value \"4\""),
            ("[defaults]\nreplay = \"sometimes\"\n", "FILE:2: replay: replay takes off, last or all"),
            ("[defaults]\n\ndepth = -1\n", "FILE:3: depth: depth takes N or SIZE"),
            ("[defaults]\ndata = 1\n", "FILE:2: data: data takes message"),
            ("[defaults]\nreplya = \"all\"\n", "FILE:2: unknown key `replya`"),
            ("[defaults]\nclear = \"x\"\n", "FILE:2: unknown key `clear`"),
            ("[mount]\nx = 1\n", "FILE:1: unknown key `mount`"),
            ("[[preset]]\npath = \"/\"\nreplay = \"all\"\n", "FILE:2: path: a preset path"),
            ("[[preset]]\npath = \"a\"\ncolour = 1\n", "FILE:3: unknown key `colour`"),
            ("[[preset]]\npath = 1\n", "FILE:2: path: path is a string"),
            ("[[preset]]\npath = \"a\"\n\n[[preset]]\nreplay = \"all\"\n", "FILE:4: this preset has no path"),
            ("[limits\n", "FILE:1: "),
        ] {
            let error = load_text(text).unwrap_err();
            assert!(error.starts_with(want), "{text:?}: {error:?} does not start with {want:?}");
            assert!(!error.contains('\n'), "{error:?}");
        }
    }

    #[test]
    fn a_missing_file_is_an_error_naming_it() {
        let mut settings = Settings::default();
        let error = load(Path::new("/nonexistent/mqfs.toml"), &mut settings).unwrap_err();
        assert!(error.contains("/nonexistent/mqfs.toml") && error.contains("No such file"), "{error}");
    }
}
