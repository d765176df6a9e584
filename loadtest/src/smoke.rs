//! `smoke`: every scenario, small and quick, against a running stack (the test command runs it
//! against its private end-to-end stack). It asserts that each completes and loses nothing —
//! never a speed. The last line reads `smoke: N passed, M failed`.

use crate::gateway::{self, Target};
use crate::{inbox, publish, spread};
use herald_core::secret::Secret;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// nginx in front of the gateways.
    #[arg(long, default_value = "127.0.0.1:18000")]
    entry: SocketAddr,
    /// The gateways, comma separated (the first is killed last, by reconnect-storm).
    #[arg(
        long,
        default_value = "127.0.0.1:18011,127.0.0.1:18012",
        value_delimiter = ','
    )]
    gateways: Vec<SocketAddr>,
    /// Run dir with the gateways' pid files (gateway1.pid, ...).
    #[arg(long, default_value = ".run/e2e")]
    run_dir: PathBuf,
}

fn target(gateway: SocketAddr, connections: usize, protocol: &str) -> Target {
    Target {
        gateway: vec![gateway],
        gateway_pid: Vec::new(),
        connections,
        sources: 2,
        first_source: 1,
        connect_concurrency: 50,
        protocol: protocol.to_owned(),
    }
}

/// Runs every scenario; returns whether all passed.
pub async fn run(api: &str, secret: &Secret, args: Args) -> anyhow::Result<bool> {
    let a = args.gateways[0];
    let b = *args.gateways.get(1).unwrap_or(&a);
    let mut passed = 0;
    let mut failed = 0;
    let mut check = |name: &str, outcome: anyhow::Result<(bool, String)>| match outcome {
        Ok((true, detail)) => {
            passed += 1;
            println!("smoke {name}: ok ({detail})");
        }
        Ok((false, detail)) => {
            failed += 1;
            println!("smoke {name}: FAILED ({detail})");
        }
        Err(e) => {
            failed += 1;
            println!("smoke {name}: FAILED ({e:#})");
        }
    };

    check(
        "publish",
        publish::run(api, secret, publish::Args::small())
            .await
            .map(|()| (true, "single and fan-out publishes answered 201".into())),
    );
    check(
        "inbox",
        inbox::run(
            api,
            secret,
            inbox::Args::small(&format!("http://{}", args.entry)),
        )
        .await
        .map(|r| {
            (
                true,
                format!("a user seeing {} notifications read them", r["seen_total"]),
            )
        }),
    );
    check(
        "hold",
        gateway::hold(secret, &target(a, 50, "raw"), 1)
            .await
            .map(|r| {
                (
                    r.connections == 50,
                    format!("{} connections", r.connections),
                )
            }),
    );
    check(
        "hold-socketio",
        gateway::hold(secret, &target(b, 20, "socketio"), 1)
            .await
            .map(|r| (r.connections == 20, format!("{} sockets", r.connections))),
    );
    check(
        "fanout",
        gateway::fanout(api, secret, &target(a, 100, "raw"), 3, 2)
            .await
            .map(|r| {
                (
                    r.lost == 0,
                    format!("{} delivered, {} lost", r.delivered, r.lost),
                )
            }),
    );
    check(
        "fanout-socketio",
        gateway::fanout(api, secret, &target(b, 50, "socketio"), 3, 2)
            .await
            .map(|r| {
                (
                    r.lost == 0,
                    format!("{} delivered, {} lost", r.delivered, r.lost),
                )
            }),
    );
    let mut both = target(a, 60, "raw");
    both.gateway = vec![a, b];
    check(
        "fanout-processes",
        spread::fanout(api, secret, &both, 3, 2, 2).await.map(|r| {
            (
                r.lost == 0 && r.rounds == 3 && r.delivered == 60 * 3 * 2,
                format!(
                    "2 processes, 2 gateways: {} delivered, {} lost",
                    r.delivered, r.lost
                ),
            )
        }),
    );
    check(
        "targeted",
        gateway::targeted(
            api,
            secret,
            &target(args.entry, 20, "raw"),
            50,
            2,
            gateway::Via::Notifications,
        )
        .await
        .map(|r| {
            (
                r.lost == 0 && r.errors == 0,
                format!(
                    "{} sent, {} received, {} lost, {} errors",
                    r.sent, r.received, r.lost, r.errors
                ),
            )
        }),
    );
    check(
        "targeted-socketio-events",
        gateway::targeted(
            api,
            secret,
            &target(b, 10, "socketio"),
            50,
            1,
            gateway::Via::Events,
        )
        .await
        .map(|r| {
            (
                r.lost == 0 && r.errors == 0,
                format!("{} sent, {} received, {} lost", r.sent, r.received, r.lost),
            )
        }),
    );
    check(
        "slow-client",
        gateway::slow_client(api, secret, &target(b, 3, "raw"), 1_200)
            .await
            .map(|r| {
                (
                    r.healthy_lost == 0 && r.slow_client_cut_off,
                    format!(
                        "healthy lost {}, slow cut off: {}",
                        r.healthy_lost, r.slow_client_cut_off
                    ),
                )
            }),
    );
    let pid: Option<u32> = std::fs::read_to_string(args.run_dir.join("gateway1.pid"))
        .ok()
        .and_then(|p| p.trim().parse().ok());
    check(
        "reconnect-storm",
        match pid {
            Some(pid) => gateway::reconnect_storm(api, secret, args.entry, pid, 30, 2)
                .await
                .map(|r| {
                    (
                        r.lost == 0 && r.all_back_ms.is_some(),
                        format!(
                            "{} clients, back in {:?} ms, {} lost",
                            r.clients,
                            r.all_back_ms.map(|m| m.round()),
                            r.lost
                        ),
                    )
                }),
            None => Err(anyhow::anyhow!(
                "no gateway1.pid in {}",
                args.run_dir.display()
            )),
        },
    );
    println!("smoke: {passed} passed, {failed} failed");
    Ok(failed == 0)
}
