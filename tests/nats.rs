//! Mounts backed by NATS JetStream (issue 15, docs/nats.md): two or three mounts of the same
//! servers and prefix stand in for hosts; the servers are started per test on loopback
//! (tests/common/nats.rs).

mod common;

use common::nats::{NatsCluster, NatsServer, pings, request};
use std::time::Duration;

const T: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// The harness
// ---------------------------------------------------------------------------

fn jetstream_answers(port: u16) -> bool {
    request(port, "$JS.API.INFO", "", T).contains("io.nats.jetstream.api.v1.account_info_response")
}

#[test]
fn harness_server_and_cluster_start_stop_and_answer() {
    let mut server = NatsServer::new();
    let port = server.client_port();
    assert!(pings(port), "the server answers PING");
    assert!(jetstream_answers(port), "JetStream answers on {}", server.url());
    server.stop();
    assert!(!pings(port), "a stopped server answers nothing");
    server.start();
    assert_eq!(server.client_port(), port, "started again on the same port");
    assert!(jetstream_answers(port));

    let mut cluster = NatsCluster::new();
    let urls = cluster.urls();
    assert_eq!(urls.matches("127.0.0.1:").count(), 3, "three nodes in {urls}");
    let leader = cluster.meta_leader(0).expect("a meta leader");
    let stopped = ["n0", "n1", "n2"].iter().position(|n| *n == leader).unwrap();
    cluster.stop(stopped);
    let other = (stopped + 1) % 3;
    common::wait_until("a new meta leader among the two left", T, || {
        cluster.meta_leader(other).is_some_and(|l| l != leader)
    });
    assert!(jetstream_answers(cluster.node(other).client_port()));
    cluster.start(stopped);
    for i in 0..3 {
        assert!(jetstream_answers(cluster.node(i).client_port()), "node {i} answers");
    }
}
