//! A group's configuration: how its streams are read, replayed and bounded, and its
//! vocabulary. [`SETTINGS`] is the one place a setting's name, values and words are spelled:
//! the ctl language (`ctl/language.rs`), `-o` options, the configuration file, presets and the
//! help texts all read them from there, so a new setting is a field, a type and a row.

use std::fmt;
use std::time::Duration;

pub use crate::storage::{Placement, SyncPolicy};

/// How a read is cut from the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataMode {
    /// A read returns bytes of at most one message.
    Message,
    /// A read returns as many bytes as are available, across message boundaries.
    Coalesce,
    /// The stream reads like a regular file over its retained history: by offset, with an
    /// end of file. Decided when a file is opened.
    Static,
}

/// When a write returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteMode {
    /// At once, when the message is committed.
    NonBlock,
    /// Once at least one reader has received the whole message.
    One,
    /// Once every reader open at the commit has received it (or closed).
    All,
}

/// What makes a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame {
    /// Each write(2).
    Write,
    /// Everything written through one open file description, published when it is closed.
    Close,
}

/// What a reader that opens a non-empty stream gets first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Replay {
    /// Only messages written after the open.
    Off,
    /// The most recent retained message, then new ones.
    Last,
    /// Every retained message, then new ones.
    All,
}

/// Whether a group receives a copy of every message of its parent's streams (a durable
/// subscription: see `tree/follow.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Follow {
    None,
    /// Every message committed in a stream of the parent group is also committed in the
    /// group's stream of the same name.
    Parent,
}

/// Who a stream's messages go to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deliver {
    /// Every reader gets every message (fan-out).
    All,
    /// Each message goes to one reader, which acknowledges it (a work queue).
    One,
}

/// A bound on a stream's retained messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Depth {
    Unlimited,
    Messages(u64),
    Bytes(u64),
}

impl Depth {
    /// Whether `messages` messages of `bytes` payload bytes exceed the bound.
    pub fn exceeded(self, messages: u64, bytes: u64) -> bool {
        match self {
            Depth::Unlimited => false,
            Depth::Messages(n) => messages > n,
            Depth::Bytes(n) => bytes > n,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupConfig {
    pub data: DataMode,
    pub replay: Replay,
    pub depth: Depth,
    pub write: WriteMode,
    pub frame: Frame,
    /// Where the group's history is kept.
    pub store: Placement,
    /// When its appends reach stable storage.
    pub sync: SyncPolicy,
    pub deliver: Deliver,
    /// Under `deliver one`, how long a message may stay in flight unacknowledged before it
    /// is handed to another reader (zero: for ever).
    pub ackwait: Duration,
    /// Under `deliver one`, how many unacknowledged deliveries a message gets before it is
    /// moved to the stream of dead messages beside its own (0: no limit).
    pub maxdeliver: u64,
    /// Whether it receives copies of its parent's messages.
    pub follow: Follow,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            data: DataMode::Message,
            replay: Replay::Off,
            depth: Depth::Unlimited,
            write: WriteMode::NonBlock,
            frame: Frame::Write,
            store: Placement::Memory,
            sync: SyncPolicy::Never,
            deliver: Deliver::All,
            ackwait: Duration::ZERO,
            maxdeliver: 0,
            follow: Follow::None,
        }
    }
}

/// A setting whose values are words: each value and its word, spelled once by [`words!`].
pub trait Words: Copy + PartialEq + Sized + 'static {
    /// Every value with its word; a value listed again (an alias) is written with its first.
    const WORDS: &'static [(Self, &'static str)];

    fn parse(word: &str) -> Option<Self> {
        Self::WORDS.iter().find(|(_, w)| *w == word).map(|(value, _)| *value)
    }

    fn word(self) -> &'static str {
        Self::WORDS.iter().find(|(value, _)| *value == self).map_or("?", |(_, word)| word)
    }

    /// The words, without aliases.
    fn words() -> Vec<&'static str> {
        let mut words: Vec<(Self, &'static str)> = Vec::new();
        for &(value, word) in Self::WORDS {
            if !words.iter().any(|(v, _)| *v == value) {
                words.push((value, word));
            }
        }
        words.into_iter().map(|(_, word)| word).collect()
    }
}

/// Spells a word-valued setting's words: its [`Words`] table and its `Display`.
macro_rules! words {
    ($type:ident { $($value:ident = $word:literal),+ $(,)? }) => {
        impl Words for $type {
            const WORDS: &'static [(Self, &'static str)] = &[$(($type::$value, $word)),+];
        }

        impl fmt::Display for $type {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.word())
            }
        }
    };
}

words!(DataMode { Message = "message", Coalesce = "coalesce", Static = "static" });
// `on` is mq(4)'s spelling of `all`.
words!(Replay { Off = "off", Last = "last", All = "all", All = "on" });
words!(WriteMode { NonBlock = "nonblock", One = "one", All = "all" });
words!(Frame { Write = "write", Close = "close" });
words!(Placement { Memory = "memory", Disk = "disk" });
words!(Follow { None = "none", Parent = "parent" });
words!(Deliver { All = "all", One = "one" });

/// One setting of a group's configuration, as every interface spells it.
pub struct Setting {
    /// Its ctl command, `-o` option and configuration-file key.
    pub name: &'static str,
    /// Its values as help texts write them: `off`, `last`, `all`; `N`, `SIZE`.
    pub forms: fn() -> Vec<&'static str>,
    /// What the values mean, where the forms do not say it (`""` where they do).
    pub hint: &'static str,
    /// Sets the value `word` stands for; false, and `config` unchanged, if it stands for none.
    pub set: fn(&mut GroupConfig, &str) -> bool,
    /// The value in `config`, as ctl writes it.
    pub get: fn(&GroupConfig) -> String,
}

impl Setting {
    /// `off|last|all`: the forms as option help writes them.
    pub fn usage(&self) -> String {
        (self.forms)().join("|")
    }

    /// Why `word` is not a value: `replay takes off, last or all, not "x"`.
    pub fn refusal(&self, word: &str) -> String {
        let forms = (self.forms)();
        let listed = match forms.split_last() {
            Some((last, [])) => last.to_string(),
            Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
            None => String::new(),
        };
        format!("{} takes {listed}{}, not {word:?}", self.name, self.hint)
    }
}

/// A setting whose values are the words of `$type`, kept in `GroupConfig::$field`.
macro_rules! word_setting {
    ($field:ident: $type:ident) => {
        Setting {
            name: stringify!($field),
            forms: <$type as Words>::words,
            hint: "",
            set: |config, word| <$type as Words>::parse(word).map(|value| config.$field = value).is_some(),
            get: |config| config.$field.to_string(),
        }
    };
}

/// Every setting, in the order ctl lists them.
pub const SETTINGS: &[Setting] = &[
    word_setting!(data: DataMode),
    word_setting!(replay: Replay),
    Setting {
        name: "depth",
        forms: || vec!["N", "SIZE"],
        hint: " (a count, or a size such as 64K)",
        set: |config, word| Depth::parse(word).map(|depth| config.depth = depth).is_some(),
        get: |config| config.depth.to_string(),
    },
    word_setting!(write: WriteMode),
    word_setting!(frame: Frame),
    word_setting!(store: Placement),
    Setting {
        name: "sync",
        forms: || vec!["never", "always", "DURATION"],
        hint: " (such as 100ms or 2s)",
        set: |config, word| SyncPolicy::parse(word).map(|sync| config.sync = sync).is_some(),
        get: |config| config.sync.to_string(),
    },
    word_setting!(deliver: Deliver),
    Setting {
        name: "ackwait",
        forms: || vec!["0", "DURATION"],
        hint: " (0 for never, or such as 500ms or 30s)",
        set: |config, word| parse_wait(word).map(|wait| config.ackwait = wait).is_some(),
        get: |config| wait_word(config.ackwait),
    },
    Setting {
        name: "maxdeliver",
        forms: || vec!["N"],
        hint: " (0 for no limit)",
        set: |config, word| word.parse().map(|n| config.maxdeliver = n).is_ok(),
        get: |config| config.maxdeliver.to_string(),
    },
    word_setting!(follow: Follow),
];

/// The setting called `name`.
pub fn setting(name: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|setting| setting.name == name)
}

impl Depth {
    /// `0` (unlimited), a message count (`100`), or a size with a unit (`64K`, `16M`, `1G`,
    /// `512B`; binary multiples).
    pub fn parse(word: &str) -> Option<Self> {
        let unit_at = word.find(|c: char| !c.is_ascii_digit()).unwrap_or(word.len());
        let (digits, unit) = word.split_at(unit_at);
        let n: u64 = digits.parse().ok()?;
        let multiplier = match unit {
            "" => return Some(if n == 0 { Depth::Unlimited } else { Depth::Messages(n) }),
            "B" | "b" => 1,
            "K" | "k" => 1 << 10,
            "M" | "m" => 1 << 20,
            "G" | "g" => 1 << 30,
            _ => return None,
        };
        let bytes = n.checked_mul(multiplier)?;
        Some(if bytes == 0 { Depth::Unlimited } else { Depth::Bytes(bytes) })
    }
}

impl SyncPolicy {
    /// `never`, `always`, or a duration in milliseconds or seconds (`100ms`, `2s`), not 0.
    pub fn parse(word: &str) -> Option<Self> {
        match word {
            "never" => return Some(SyncPolicy::Never),
            "always" => return Some(SyncPolicy::Always),
            _ => {}
        }
        let interval = parse_duration(word)?;
        (!interval.is_zero()).then_some(SyncPolicy::Interval(interval))
    }
}

/// A duration in milliseconds or seconds: `100ms`, `2s`.
pub fn parse_duration(word: &str) -> Option<Duration> {
    let (digits, unit) = word.split_at(word.find(|c: char| !c.is_ascii_digit())?);
    let n: u64 = digits.parse().ok()?;
    match unit {
        "ms" => Some(Duration::from_millis(n)),
        "s" => Some(Duration::from_secs(n)),
        _ => None,
    }
}

/// A duration as `parse_duration` reads it: whole seconds as `2s`, else milliseconds.
fn duration_word(duration: Duration) -> String {
    if duration.subsec_millis() == 0 {
        format!("{}s", duration.as_secs())
    } else {
        format!("{}ms", duration.as_millis())
    }
}

/// `ackwait`: `0` (never), or a duration.
fn parse_wait(word: &str) -> Option<Duration> {
    if word == "0" { Some(Duration::ZERO) } else { parse_duration(word) }
}

fn wait_word(wait: Duration) -> String {
    if wait.is_zero() { "0".into() } else { duration_word(wait) }
}

impl fmt::Display for SyncPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            SyncPolicy::Never => f.write_str("never"),
            SyncPolicy::Always => f.write_str("always"),
            SyncPolicy::Interval(interval) => f.write_str(&duration_word(interval)),
        }
    }
}

/// Parses a byte size such as `512M`, `2G`, `4096` (used by mount options too).
pub fn parse_size(word: &str) -> Option<u64> {
    match Depth::parse(word)? {
        Depth::Unlimited => Some(0),
        Depth::Messages(n) | Depth::Bytes(n) => Some(n),
    }
}

impl fmt::Display for Depth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Depth::Unlimited => f.write_str("0"),
            Depth::Messages(n) => write!(f, "{n}"),
            Depth::Bytes(n) => {
                let units = [(1 << 30, "G"), (1 << 20, "M"), (1 << 10, "K")];
                match units.iter().find(|(size, _)| n % size == 0) {
                    Some((size, unit)) => write!(f, "{}{unit}", n / size),
                    None => write!(f, "{n}B"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_parses_counts_and_sizes() {
        assert_eq!(Depth::parse("0"), Some(Depth::Unlimited));
        assert_eq!(Depth::parse("0M"), Some(Depth::Unlimited));
        assert_eq!(Depth::parse("100"), Some(Depth::Messages(100)));
        assert_eq!(Depth::parse("64K"), Some(Depth::Bytes(64 << 10)));
        assert_eq!(Depth::parse("16m"), Some(Depth::Bytes(16 << 20)));
        assert_eq!(Depth::parse("2G"), Some(Depth::Bytes(2 << 30)));
        assert_eq!(Depth::parse("10B"), Some(Depth::Bytes(10)));
        for bad in ["", "-1", "1.5M", "M", "12Q", "99999999999999999999", "17179869184G"] {
            assert_eq!(Depth::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn depth_prints_what_it_parses() {
        for word in ["0", "100", "64K", "16M", "2G", "1000B", "1025B"] {
            assert_eq!(Depth::parse(word).unwrap().to_string(), word);
        }
    }

    #[test]
    fn every_setting_writes_what_it_reads() {
        for setting in SETTINGS {
            let mut config = GroupConfig::default();
            let word = (setting.get)(&config);
            assert!((setting.set)(&mut config, &word), "{} {word}", setting.name);
            assert_eq!(config, GroupConfig::default(), "{} {word}", setting.name);
            assert!(!(setting.set)(&mut config, "bogus"), "{}", setting.name);
            assert!(setting.refusal("bogus").starts_with(&format!("{} takes ", setting.name)));
        }
        assert_eq!(setting("replay").unwrap().refusal("x"), "replay takes off, last or all, not \"x\"");
        assert_eq!(setting("replay").unwrap().usage(), "off|last|all");
        assert_eq!(Replay::parse("on"), Some(Replay::All), "mq(4)'s word");
        assert_eq!(Replay::All.to_string(), "all");
    }

    #[test]
    fn sync_parses_words_and_durations() {
        assert_eq!(SyncPolicy::parse("never"), Some(SyncPolicy::Never));
        assert_eq!(SyncPolicy::parse("always"), Some(SyncPolicy::Always));
        assert_eq!(SyncPolicy::parse("100ms"), Some(SyncPolicy::Interval(Duration::from_millis(100))));
        assert_eq!(SyncPolicy::parse("2s"), Some(SyncPolicy::Interval(Duration::from_secs(2))));
        for word in ["100ms", "2s", "1500ms"] {
            assert_eq!(SyncPolicy::parse(word).unwrap().to_string(), word);
        }
        assert_eq!(SyncPolicy::parse("2000ms").unwrap().to_string(), "2s");
        for bad in ["", "0s", "0ms", "5", "ms", "1.5s", "3m", "-1s", "99999999999999999999s"] {
            assert_eq!(SyncPolicy::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn queue_settings_parse_and_print() {
        let mut config = GroupConfig::default();
        assert!((setting("deliver").unwrap().set)(&mut config, "one"));
        assert_eq!(config.deliver, Deliver::One);
        let ackwait = setting("ackwait").unwrap();
        assert!((ackwait.set)(&mut config, "1500ms"));
        assert_eq!(config.ackwait, Duration::from_millis(1500));
        assert_eq!((ackwait.get)(&config), "1500ms");
        assert!((ackwait.set)(&mut config, "30s"));
        assert_eq!((ackwait.get)(&config), "30s");
        assert!((ackwait.set)(&mut config, "0"));
        assert_eq!(config.ackwait, Duration::ZERO);
        for bad in ["", "5", "0x", "1.5s", "-1s"] {
            assert!(!(ackwait.set)(&mut config, bad), "{bad:?}");
        }
        let maxdeliver = setting("maxdeliver").unwrap();
        assert!((maxdeliver.set)(&mut config, "3"));
        assert_eq!(config.maxdeliver, 3);
        assert!(!(maxdeliver.set)(&mut config, "-1"));
        assert_eq!((maxdeliver.get)(&config), "3");
    }

    #[test]
    fn depth_bounds_by_its_own_unit() {
        assert!(!Depth::Unlimited.exceeded(u64::MAX, u64::MAX));
        assert!(Depth::Messages(2).exceeded(3, 0));
        assert!(!Depth::Messages(2).exceeded(2, 1 << 40));
        assert!(Depth::Bytes(10).exceeded(1, 11));
        assert!(!Depth::Bytes(10).exceeded(1000, 10));
    }
}
