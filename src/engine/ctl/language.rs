//! The ctl language: the commands a group's `ctl` file accepts and the text it reads as.
//!
//! One command per line; blank lines and `#` comments are ignored, so what reading `ctl`
//! prints can be written back unchanged. A whole write is parsed before anything is applied:
//! one bad line rejects the write and changes nothing.

use crate::engine::config::{GroupConfig, SETTINGS, setting};

/// The word of the one command that is not a setting.
const CLEAR: &str = "clear";

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Sets one of [`SETTINGS`] (by its name) to a value it takes.
    Set { setting: &'static str, value: String },
    /// Empty the history of every stream in the group.
    Clear,
}

impl Command {
    /// The command setting `name` to `value`, or why there is none: `None` if `name` is no
    /// setting, else the reason `value` is not one of its values.
    pub fn set(name: &str, value: &str) -> Option<Result<Command, String>> {
        let setting = setting(name)?;
        let mut probe = GroupConfig::default();
        Some(if (setting.set)(&mut probe, value) {
            Ok(Command::Set { setting: setting.name, value: value.to_string() })
        } else {
            Err(setting.refusal(value))
        })
    }

    /// Applies a configuration command; false for `clear`, which changes history instead.
    pub fn configure(&self, config: &mut GroupConfig) -> bool {
        match self {
            Command::Set { setting: name, value } => {
                let applied = setting(name).is_some_and(|setting| (setting.set)(config, value));
                debug_assert!(applied, "a parsed command applies");
                true
            }
            Command::Clear => false,
        }
    }
}

/// Why a ctl write was refused: the line number (from 1) and what was wrong with it.
#[derive(Debug, PartialEq, Eq)]
pub struct CtlError {
    pub line: usize,
    pub reason: String,
}

impl std::fmt::Display for CtlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

/// The most of a refusal's reason an error comment keeps: a bad word is quoted in it, and a
/// ctl write may be 1 MiB long.
const ERROR_REASON_MAX: usize = 200;

/// The comment line that tells a writer why its ctl write was refused, at the end of its
/// next reads of `ctl`. Being a comment, it is ignored when what `ctl` printed is written
/// back.
pub fn error_comment(reason: &str) -> String {
    match reason.char_indices().nth(ERROR_REASON_MAX) {
        Some((cut, _)) => format!("# error: {}...\n", &reason[..cut]),
        None => format!("# error: {reason}\n"),
    }
}

/// Parses every command of a ctl write, or reports the first bad line.
pub fn parse(text: &[u8]) -> Result<Vec<Command>, CtlError> {
    let text =
        std::str::from_utf8(text).map_err(|_| CtlError { line: 1, reason: "not UTF-8 text".into() })?;
    let mut commands = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fail = |reason: String| CtlError { line: index + 1, reason };
        let words: Vec<&str> = line.split_whitespace().collect();
        let command = match words.as_slice() {
            [CLEAR] => Command::Clear,
            [name, value] if setting(name).is_some() => {
                Command::set(name, value).expect("a setting").map_err(fail)?
            }
            [word, ..] if *word == CLEAR || setting(word).is_some() => {
                return Err(fail(format!("wrong number of arguments to {word}")));
            }
            [word, ..] => return Err(fail(format!("unknown command {word:?}"))),
            [] => unreachable!("blank lines were skipped"),
        };
        commands.push(command);
    }
    Ok(commands)
}

/// A group's state as reported after its configuration.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Status {
    pub streams: u64,
    pub groups: u64,
    pub readers: u64,
    pub messages: u64,
    pub bytes: u64,
}

/// A configuration as the commands that set it, one line per setting: what `ctl` reads as
/// first, and what the catalogue keeps of a group.
pub fn render_config(config: &GroupConfig) -> String {
    SETTINGS.iter().map(|setting| format!("{} {}\n", setting.name, (setting.get)(config))).collect()
}

/// The text a read of `ctl` returns: configuration as commands, then status as comments.
pub fn render(config: &GroupConfig, status: &Status) -> String {
    render_config(config)
        + &format!(
            "# streams {}\n# groups {}\n# readers {}\n# messages {}\n# bytes {}\n",
            status.streams, status.groups, status.readers, status.messages, status.bytes
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::config::{
        DataMode, Deliver, Depth, Follow, Frame, Placement, Replay, SyncPolicy, WriteMode,
    };

    fn set(name: &'static str, value: &str) -> Command {
        Command::Set { setting: name, value: value.into() }
    }

    #[test]
    fn parses_every_command() {
        let commands = parse(b"data coalesce\nreplay last\n  depth 64K \n\n# note\nclear\n");
        assert_eq!(
            commands,
            Ok(vec![set("data", "coalesce"), set("replay", "last"), set("depth", "64K"), Command::Clear,])
        );
        assert_eq!(parse(b"replay on"), Ok(vec![set("replay", "on")]));
        assert_eq!(
            parse(b"write one\nframe close\ndata static"),
            Ok(vec![set("write", "one"), set("frame", "close"), set("data", "static")])
        );
    }

    #[test]
    fn rejects_bad_lines_naming_them() {
        let cases: &[(&[u8], usize)] = &[
            (b"replay sometimes", 1),
            (b"data message\nfrobnicate", 2),
            (b"depth", 1),
            (b"depth 1 2", 1),
            (b"clear now", 1),
            (b"depth -5", 1),
            (b"\xff\xfe", 1),
        ];
        for (text, line) in cases {
            let error = parse(text).unwrap_err();
            assert_eq!(error.line, *line, "{:?}", String::from_utf8_lossy(text));
        }
    }

    #[test]
    fn an_error_comment_is_one_bounded_comment_line_that_parses_as_nothing() {
        let error = parse(b"data message\nbogus\n").unwrap_err();
        assert_eq!(error_comment(&error.to_string()), "# error: line 2: unknown command \"bogus\"\n");
        let long = format!("x{}\ny", "é".repeat(100_000));
        let comment = error_comment(&parse(long.as_bytes()).unwrap_err().to_string());
        assert!(comment.len() < 4 * ERROR_REASON_MAX && comment.ends_with("...\n"), "{comment}");
        assert_eq!(comment.lines().count(), 1);
        assert_eq!(parse(comment.as_bytes()), Ok(Vec::new()));
    }

    #[test]
    fn what_it_renders_parses_back_to_the_same_config() {
        let config = GroupConfig {
            data: DataMode::Coalesce,
            replay: Replay::All,
            depth: Depth::Bytes(1 << 20),
            write: WriteMode::All,
            frame: Frame::Close,
            store: Placement::Disk,
            sync: SyncPolicy::Interval(std::time::Duration::from_millis(250)),
            deliver: Deliver::One,
            ackwait: std::time::Duration::from_secs(30),
            maxdeliver: 5,
            follow: Follow::Parent,
        };
        let status = Status { streams: 2, groups: 1, readers: 3, messages: 4, bytes: 5 };
        let text = render(&config, &status);
        assert!(text.contains("# readers 3\n"), "{text}");
        let mut back = GroupConfig::default();
        for command in parse(text.as_bytes()).unwrap() {
            assert!(command.configure(&mut back), "render never says clear");
        }
        assert_eq!(back, config);
    }
}
