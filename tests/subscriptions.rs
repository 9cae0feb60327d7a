//! Durable subscriptions on real mounts (docs/semantics.md, "Durable subscriptions"): groups
//! that `follow parent` each receive every message of their parent's streams in a stream of
//! their own, read at their own pace by ordinary processes; a stream made in the followed
//! group appears in every recipient; a recipient that stopped reading finds everything when
//! it comes back; on a disk store the recipients' streams and the wiring survive a remount.

mod common;

use std::fs;
use std::process::Command;
use std::time::Duration;

use common::{Mount, Proc, TempDir, history_lines, run_ok};

const T: Duration = Duration::from_secs(10);

/// `news` (replay all, inherited) with stream `s` and recipients `alice` and `bob`.
fn subscribe(m: &Mount) {
    run_ok(
        "mkdir news && echo 'replay all' > news/ctl && touch news/s && \
         mkdir news/alice news/bob && \
         echo 'follow parent' > news/alice/ctl && echo 'follow parent' > news/bob/ctl",
        &m.path,
    );
}

fn lines(range: std::ops::Range<u32>) -> Vec<String> {
    range.map(|i| format!("news {i}\n")).collect()
}

fn publish(m: &Mount, range: std::ops::Range<u32>) {
    for line in lines(range) {
        run_ok(&format!("printf '{}' >> news/s", line.escape_default()), &m.path);
    }
}

#[test]
fn two_recipients_each_read_every_message_at_their_own_pace() {
    let m = Mount::new();
    subscribe(&m);
    assert!(fs::read_to_string(m.join("news/alice/ctl")).unwrap().contains("follow parent\n"));
    // Alice reads as the messages come; bob reads nothing yet.
    let alice = Proc::spawn(Command::new("cat").arg(m.join("news/alice/s")));
    publish(&m, 0..3);
    alice.wait_output_contains(lines(0..3).concat().as_bytes(), T);
    // Alice stops reading; more come; bob reads them all at once, later.
    drop(alice);
    publish(&m, 3..5);
    assert_eq!(history_lines(&m.join("news/bob/s")), lines(0..5));
    // Alice comes back and finds everything, her copies kept for her.
    assert_eq!(history_lines(&m.join("news/alice/s")), lines(0..5));
    // The recipient's order lists its own copies; the source's stream is untouched by reads.
    assert_eq!(history_lines(&m.join("news/alice/order")), vec!["s\n"; 5]);
    assert_eq!(history_lines(&m.join("news/s")), lines(0..5));
}

#[test]
fn a_new_stream_in_the_followed_group_appears_in_every_recipient() {
    let m = Mount::new();
    subscribe(&m);
    run_ok("echo first > news/new", &m.path);
    for recipient in ["alice", "bob"] {
        let listed = run_ok(&format!("ls news/{recipient}"), &m.path);
        assert_eq!(listed, "ctl\nnew\norder\ns\n", "{recipient}");
        assert_eq!(history_lines(&m.join(format!("news/{recipient}/new"))), ["first\n"]);
    }
    // History from before a recipient followed is not copied.
    run_ok("mkdir news/carol && echo 'follow parent' > news/carol/ctl", &m.path);
    assert_eq!(run_ok("ls news/carol", &m.path), "ctl\nnew\norder\ns\n");
    assert_eq!(history_lines(&m.join("news/carol/new")), Vec::<String>::new());
}

#[test]
fn a_subscription_survives_a_remount_on_a_disk_store() {
    let store = TempDir::new();
    {
        let m = Mount::on_store(&store.path, "");
        subscribe(&m);
        publish(&m, 0..2);
        assert_eq!(history_lines(&m.join("news/alice/s")), lines(0..2));
    }
    let m = Mount::on_store(&store.path, "");
    for recipient in ["alice", "bob"] {
        assert_eq!(history_lines(&m.join(format!("news/{recipient}/s"))), lines(0..2), "{recipient} kept");
    }
    // Still following: what is written now is copied too.
    publish(&m, 2..3);
    run_ok("echo later > news/t", &m.path);
    for recipient in ["alice", "bob"] {
        assert_eq!(history_lines(&m.join(format!("news/{recipient}/s"))), lines(0..3), "{recipient}");
        assert_eq!(history_lines(&m.join(format!("news/{recipient}/t"))), ["later\n"], "{recipient}");
    }
}
