//! Storage semantics, checked on both backends.
//!
//! Each test is written once, against a [`Store`] (a study folder in a temporary directory, or
//! a study in a fresh PostgreSQL database from `nas-testdb`), and `both!` runs it on each:
//! `storage::tests::NAME::sqlite` and `storage::tests::NAME::postgres`. The PostgreSQL tests
//! need a server (see `nas-testdb`); they fail, never skip, without one.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use nas_testdb::TestDb;

use super::*;

/// Where a test's studies live.
enum Store {
    Sqlite(tempfile::TempDir),
    Postgres(TestDb),
}

/// The study the tests open unless they name another.
const STUDY: &str = "study";

impl Store {
    fn sqlite() -> Store {
        Store::Sqlite(tempfile::tempdir().unwrap())
    }

    fn postgres() -> Store {
        Store::Postgres(TestDb::create("storage"))
    }

    fn is_postgres(&self) -> bool {
        matches!(self, Store::Postgres(_))
    }

    /// Opens (creating it if needed) the test's study.
    fn open(&self) -> Storage {
        self.open_study(STUDY, OpenMode::Create)
    }

    /// Opens the test's study, which must exist.
    fn reopen(&self) -> Storage {
        self.open_study(STUDY, OpenMode::Existing)
    }

    /// Opens study `name`: a folder of its own in SQLite, a study of the same database in
    /// PostgreSQL.
    fn open_study(&self, name: &str, mode: OpenMode) -> Storage {
        match self {
            Store::Sqlite(dir) => {
                let dir: PathBuf = dir.path().join(name);
                match mode {
                    OpenMode::Create => Storage::create(&dir),
                    OpenMode::Existing => Storage::open_existing(&dir),
                    OpenMode::ReadOnly => Storage::open_read_only(&dir),
                }
                .unwrap()
            }
            Store::Postgres(db) => Storage::connect(&db.url.parse().unwrap(), name, mode).unwrap(),
        }
    }
}

/// `NAME::sqlite` and `NAME::postgres`, each running `fn NAME(&Store)` on a fresh store.
macro_rules! both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn sqlite() {
                super::$name(&super::Store::sqlite());
            }

            #[test]
            fn postgres() {
                super::$name(&super::Store::postgres());
            }
        }
    )*};
}

both!(
    trials_checkpoints_and_meta_survive_reopening,
    inserting_the_same_proposal_twice_stores_one_trial,
    trial_ids_start_at_one_in_each_study,
    concurrent_claims_take_every_trial_exactly_once,
    only_the_holder_renews_a_lease,
    expired_leases_requeue_then_fail,
    the_first_report_is_kept,
    finish_tells_and_untold_lists_the_rest,
    state_counts_count_each_state,
    worker_heartbeats_register_and_update,
    metric_values_with_dots_and_dashes,
    one_coordinator_per_study,
    the_parent_of_a_trial_is_kept,
);

fn new_trial(hash: &str) -> NewTrial {
    NewTrial {
        state: TrialState::Pending,
        strategy: "random".into(),
        strategy_index: 0,
        values: vec![1.0, 2.0],
        arch: "a".into(),
        hash: hash.into(),
        fidelity: None,
        metrics: Metrics::from([("params".to_string(), 10.0)]),
        error: None,
        proposal: None,
        parent: None,
    }
}

fn the_parent_of_a_trial_is_kept(store: &Store) {
    let mut s = store.open();
    let first = s.insert_trial(&new_trial("h1"), &[]).unwrap();
    let child = NewTrial {
        parent: Some(first),
        ..new_trial("h2")
    };
    let second = s.insert_trial(&child, &[]).unwrap();
    let trials = s.trials().unwrap();
    assert_eq!(trials[0].parent, None);
    assert_eq!(trials[1].parent, Some(first));
    assert_eq!(s.trial(second).unwrap().unwrap().parent, Some(first));
    // Also as a worker claims it.
    s.claim_next("w", 60.0).unwrap();
    let claimed = s.claim_next("w", 60.0).unwrap().unwrap();
    assert_eq!((claimed.id, claimed.parent), (second, Some(first)));
}

fn complete(metric: &str, value: f64) -> Outcome {
    Outcome {
        state: TrialState::Complete,
        metrics: Metrics::from([(metric.to_string(), value)]),
        details: serde_json::Value::Null,
        error: None,
    }
}

fn checkpoint(k: i64) -> Checkpoint {
    Checkpoint {
        strategy_index: 0,
        name: "random".into(),
        state: serde_json::json!({ "k": k }),
    }
}

fn ids(trials: &[TrialRecord]) -> Vec<u64> {
    trials.iter().map(|t| t.id).collect()
}

fn trials_checkpoints_and_meta_survive_reopening(store: &Store) {
    {
        let mut s = store.open();
        let id = s.insert_trial(&new_trial("h1"), &[checkpoint(1)]).unwrap();
        assert!(s.claim(id, "w", 60.0).unwrap());
        s.finish(id, &complete("latency_ms", 0.5), &[checkpoint(2)], 3.0)
            .unwrap();
        s.insert_trial(&new_trial("h2"), &[]).unwrap();
        s.set_meta("config", "x = 1").unwrap();
    }
    let s = store.reopen();
    let trials = s.trials().unwrap();
    assert_eq!(ids(&trials), [1, 2]);
    assert_eq!(trials[0].state, TrialState::Complete);
    assert_eq!(trials[0].metrics["latency_ms"], 0.5);
    assert_eq!(trials[0].values, [1.0, 2.0]);
    assert_eq!(trials[0].attempts, 1);
    assert!(trials[0].told);
    assert!(trials[0].started_at.is_some());
    assert!(trials[0].finished_at.is_some());
    assert_eq!(trials[1].state, TrialState::Pending);
    assert_eq!(trials[1].metrics["params"], 10.0);
    assert_eq!(ids(&s.unfinished().unwrap()), [2]);
    assert_eq!(s.trial(2).unwrap().unwrap().hash, "h2");
    assert_eq!(s.trial(3).unwrap(), None);
    let cps = s.checkpoints().unwrap();
    assert_eq!(cps.len(), 1);
    assert_eq!(cps[0].state, serde_json::json!({"k": 2}));
    assert_eq!(s.meta("study_seconds").unwrap().as_deref(), Some("3"));
    assert_eq!(s.meta("config").unwrap().as_deref(), Some("x = 1"));
    assert_eq!(s.meta("absent").unwrap(), None);
    // Read-only opening sees the same.
    let r = store.open_study(STUDY, OpenMode::ReadOnly);
    assert_eq!(r.trials().unwrap(), trials);
}

fn inserting_the_same_proposal_twice_stores_one_trial(store: &Store) {
    let mut s = store.open();
    let proposed = |p| NewTrial {
        proposal: Some(p),
        ..new_trial(&format!("p{p}"))
    };
    let first = s.insert_trial(&proposed(7), &[checkpoint(1)]).unwrap();
    let again = s.insert_trial(&proposed(7), &[checkpoint(2)]).unwrap();
    assert_eq!(first, again);
    let other = s.insert_trial(&proposed(8), &[]).unwrap();
    assert_ne!(other, first);
    // Trials without a proposal number are never merged.
    let a = s.insert_trial(&new_trial("n"), &[]).unwrap();
    let b = s.insert_trial(&new_trial("n"), &[]).unwrap();
    assert_ne!(a, b);
    let trials = s.trials().unwrap();
    assert_eq!(ids(&trials), [1, 2, 3, 4]);
    assert_eq!(trials[0].hash, "p7");
    // The retry changed nothing, not even the checkpoint stored with the first try.
    assert_eq!(
        s.checkpoints().unwrap()[0].state,
        serde_json::json!({"k": 1})
    );
    // Another connection retrying the same proposal finds it too.
    let mut s2 = store.reopen();
    assert_eq!(s2.insert_trial(&proposed(8), &[]).unwrap(), other);
    assert_eq!(s2.trials().unwrap().len(), 4);
}

fn trial_ids_start_at_one_in_each_study(store: &Store) {
    let mut a = store.open_study("alpha", OpenMode::Create);
    let mut b = store.open_study("beta", OpenMode::Create);
    assert_eq!(
        a.insert_trial(&new_trial("a1"), &[checkpoint(1)]).unwrap(),
        1
    );
    assert_eq!(a.insert_trial(&new_trial("a2"), &[]).unwrap(), 2);
    assert_eq!(b.insert_trial(&new_trial("b1"), &[]).unwrap(), 1);
    assert_eq!(a.insert_trial(&new_trial("a3"), &[]).unwrap(), 3);
    assert_eq!(b.insert_trial(&new_trial("b2"), &[]).unwrap(), 2);
    let hashes =
        |s: &Storage| -> Vec<String> { s.trials().unwrap().into_iter().map(|t| t.hash).collect() };
    assert_eq!(hashes(&a), ["a1", "a2", "a3"]);
    assert_eq!(hashes(&b), ["b1", "b2"]);
    a.set_meta("k", "alpha").unwrap();
    assert_eq!(b.meta("k").unwrap(), None);
    b.set_meta("k", "beta").unwrap();
    assert_eq!(a.meta("k").unwrap().as_deref(), Some("alpha"));
    assert_eq!(a.checkpoints().unwrap().len(), 1);
    assert!(b.checkpoints().unwrap().is_empty());
    a.worker_beat(&WorkerBeat {
        name: "h:1".into(),
        host: "h".into(),
        pid: 1,
        trials_done: 0,
        current_trial: None,
        exited: false,
    })
    .unwrap();
    assert_eq!(a.workers().unwrap().len(), 1);
    assert!(b.workers().unwrap().is_empty());
    // A claim in one study never takes the other's trial of the same id.
    let claimed = b.claim_next("w", 60.0).unwrap().unwrap();
    assert_eq!((claimed.id, claimed.hash.as_str()), (1, "b1"));
    assert_eq!(a.trial(1).unwrap().unwrap().state, TrialState::Pending);
    b.report(1, "w", &complete("acc", 1.0)).unwrap();
    assert!(a.untold().unwrap().iter().all(|t| t.hash.starts_with('a')));
    assert_eq!(
        a.state_counts().unwrap(),
        [(TrialState::Pending, 3)],
        "study alpha counts only its own trials"
    );
    // Each study has its own coordinator.
    assert!(a.lock_coordinator().unwrap());
    assert!(b.lock_coordinator().unwrap());
    if store.is_postgres() {
        let Store::Postgres(db) = store else {
            unreachable!()
        };
        assert_eq!(
            Storage::studies(&db.url.parse().unwrap()).unwrap(),
            ["alpha", "beta"]
        );
    }
}

fn concurrent_claims_take_every_trial_exactly_once(store: &Store) {
    const TRIALS: u64 = 40;
    const WORKERS: usize = 4;
    let mut s = store.open();
    for i in 0..TRIALS {
        s.insert_trial(&new_trial(&format!("h{i}")), &[]).unwrap();
    }
    // One connection per worker, opened before the race starts.
    let stores: Vec<Storage> = (0..WORKERS).map(|_| store.reopen()).collect();
    let claimed: Vec<Vec<u64>> = std::thread::scope(|scope| {
        let handles: Vec<_> = stores
            .into_iter()
            .enumerate()
            .map(|(w, s)| {
                scope.spawn(move || {
                    let worker = format!("w{w}");
                    let mut mine = Vec::new();
                    while let Some(t) = s.claim_next(&worker, 60.0).unwrap() {
                        assert_eq!(t.state, TrialState::Running);
                        assert_eq!(t.worker.as_deref(), Some(worker.as_str()));
                        assert_eq!(t.attempts, 1);
                        mine.push(t.id);
                    }
                    mine
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for mine in &claimed {
        // Each worker got the oldest pending trial at each claim: its ids only grow.
        assert!(mine.windows(2).all(|w| w[0] < w[1]), "{mine:?}");
    }
    let mut all: Vec<u64> = claimed.iter().flatten().copied().collect();
    all.sort_unstable();
    assert_eq!(all, (1..=TRIALS).collect::<Vec<_>>(), "{claimed:?}");
    let trials = s.trials().unwrap();
    assert!(
        trials
            .iter()
            .all(|t| t.state == TrialState::Running && t.attempts == 1)
    );
    for (w, mine) in claimed.iter().enumerate() {
        for id in mine {
            assert_eq!(
                trials[*id as usize - 1].worker.as_deref(),
                Some(format!("w{w}").as_str())
            );
        }
    }
    assert!(s.claim_next("late", 60.0).unwrap().is_none());
}

fn only_the_holder_renews_a_lease(store: &Store) {
    let mut s = store.open();
    let id = s.insert_trial(&new_trial("h"), &[]).unwrap();
    // Nobody holds a pending trial.
    assert!(!s.renew_lease(id, "w1", 60.0).unwrap());
    let t = s.claim_next("w1", 60.0).unwrap().unwrap();
    assert_eq!(t.id, id);
    assert!(s.renew_lease(id, "w1", 60.0).unwrap());
    assert!(!s.renew_lease(id, "w2", 60.0).unwrap());
    assert!(!s.renew_lease(id + 1, "w1", 60.0).unwrap());
    assert!(s.report(id, "w1", &complete("acc", 0.5)).unwrap());
    assert!(!s.renew_lease(id, "w1", 60.0).unwrap());
    s.finish(id, &complete("acc", 0.5), &[], 1.0).unwrap();
    assert!(!s.renew_lease(id, "w1", 60.0).unwrap());
}

fn expired_leases_requeue_then_fail(store: &Store) {
    let mut s = store.open();
    let short = s.insert_trial(&new_trial("short"), &[]).unwrap();
    let long = s.insert_trial(&new_trial("long"), &[]).unwrap();
    assert_eq!(s.claim_next("w1", 0.05).unwrap().unwrap().id, short);
    assert_eq!(s.claim_next("w2", 60.0).unwrap().unwrap().id, long);
    std::thread::sleep(Duration::from_millis(200));

    let requeued = s.requeue_expired(1).unwrap();
    assert_eq!(
        requeued,
        [Requeued {
            id: short,
            state: TrialState::Pending,
            worker: Some("w1".into()),
        }]
    );
    let t = s.trial(short).unwrap().unwrap();
    assert_eq!(t.state, TrialState::Pending);
    assert_eq!((t.attempts, t.requeues), (1, 1));
    assert_eq!(t.error, None);
    assert!(
        !s.renew_lease(short, "w1", 60.0).unwrap(),
        "w1 lost its lease"
    );
    // A live lease is left alone.
    let l = s.trial(long).unwrap().unwrap();
    assert_eq!((l.state, l.requeues), (TrialState::Running, 0));
    assert_eq!(l.worker.as_deref(), Some("w2"));
    // Nothing else has expired.
    assert!(s.requeue_expired(1).unwrap().is_empty());

    // Claimed a second time (1 + max_retries) and expired again: failed.
    assert_eq!(s.claim_next("w3", 0.05).unwrap().unwrap().id, short);
    assert_eq!(s.trial(short).unwrap().unwrap().attempts, 2);
    std::thread::sleep(Duration::from_millis(200));
    let requeued = s.requeue_expired(1).unwrap();
    assert_eq!(
        requeued,
        [Requeued {
            id: short,
            state: TrialState::Failed,
            worker: Some("w3".into()),
        }]
    );
    let t = s.trial(short).unwrap().unwrap();
    assert_eq!(t.state, TrialState::Failed);
    assert_eq!(t.attempts, 2);
    let error = t.error.unwrap_or_default();
    assert!(error.contains("lease expired"), "{error}");
    assert!(error.contains("w3"), "{error}");
    assert!(!t.told, "the strategies still have to be told");
    assert!(t.finished_at.is_some());
    assert_eq!(ids(&s.untold().unwrap()), [short, long]);
    let l = s.trial(long).unwrap().unwrap();
    assert_eq!((l.state, l.requeues), (TrialState::Running, 0));
    // A failed trial is not claimed again.
    assert!(s.claim_next("w4", 60.0).unwrap().is_none());
    assert!(s.requeue_expired(1).unwrap().is_empty());
}

fn the_first_report_is_kept(store: &Store) {
    let mut s = store.open();
    let id = s.insert_trial(&new_trial("h"), &[]).unwrap();
    s.claim_next("w1", 60.0).unwrap().unwrap();
    assert!(s.report(id, "w1", &complete("acc", 0.9)).unwrap());
    assert!(!s.report(id, "w2", &complete("acc", 0.1)).unwrap());
    assert!(!s.report(id, "w1", &complete("acc", 0.2)).unwrap());
    let t = s.trial(id).unwrap().unwrap();
    assert_eq!(t.state, TrialState::Complete);
    assert_eq!(t.metrics, Metrics::from([("acc".to_string(), 0.9)]));
    assert_eq!(t.worker.as_deref(), Some("w1"));
    assert!(!t.told);
    assert!(t.finished_at.is_some());

    // A worker whose lease ran out reports after its trial went back to the queue: nobody
    // else has an outcome yet, so it is kept.
    let late = s.insert_trial(&new_trial("late"), &[]).unwrap();
    assert_eq!(s.claim_next("slow", 0.05).unwrap().unwrap().id, late);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(s.requeue_expired(3).unwrap().len(), 1);
    assert_eq!(s.trial(late).unwrap().unwrap().state, TrialState::Pending);
    let failed = Outcome {
        state: TrialState::Failed,
        metrics: Metrics::new(),
        details: serde_json::json!({"log": "out of memory"}),
        error: Some("oom".into()),
    };
    assert!(s.report(late, "slow", &failed).unwrap());
    let t = s.trial(late).unwrap().unwrap();
    assert_eq!(t.state, TrialState::Failed);
    assert_eq!(t.error.as_deref(), Some("oom"));
    assert_eq!(t.details, serde_json::json!({"log": "out of memory"}));
    assert_eq!(t.worker.as_deref(), Some("slow"));
    assert!(!t.told);
    // Reported, it is no longer queued.
    assert!(s.claim_next("w2", 60.0).unwrap().is_none());
}

fn finish_tells_and_untold_lists_the_rest(store: &Store) {
    let mut s = store.open();
    let told_already = s
        .insert_trial(
            &NewTrial {
                state: TrialState::Infeasible,
                error: Some("too big".into()),
                ..new_trial("inf")
            },
            &[],
        )
        .unwrap();
    let finished = s.insert_trial(&new_trial("fin"), &[]).unwrap();
    let reported = s.insert_trial(&new_trial("rep"), &[]).unwrap();
    let running = s.insert_trial(&new_trial("run"), &[]).unwrap();
    let pending = s.insert_trial(&new_trial("pen"), &[]).unwrap();
    assert_eq!(
        ids(&s.untold().unwrap()),
        [finished, reported, running, pending]
    );
    for id in [finished, reported, running] {
        assert!(s.claim(id, "w", 60.0).unwrap());
    }
    s.finish(finished, &complete("acc", 0.3), &[checkpoint(5)], 7.5)
        .unwrap();
    assert!(s.report(reported, "w", &complete("acc", 0.4)).unwrap());

    let untold = s.untold().unwrap();
    assert_eq!(ids(&untold), [reported, running, pending]);
    assert_eq!(
        untold.iter().map(|t| t.state).collect::<Vec<_>>(),
        [
            TrialState::Complete,
            TrialState::Running,
            TrialState::Pending
        ]
    );
    let f = s.trial(finished).unwrap().unwrap();
    assert!(f.told);
    assert_eq!(f.state, TrialState::Complete);
    assert_eq!(f.metrics["acc"], 0.3);
    assert!(s.trial(told_already).unwrap().unwrap().told);
    assert_eq!(s.meta("study_seconds").unwrap().as_deref(), Some("7.5"));
    assert_eq!(
        s.checkpoints().unwrap()[0].state,
        serde_json::json!({"k": 5})
    );

    // Telling a reported trial keeps the time its worker finished it.
    let reported_at = s.trial(reported).unwrap().unwrap().finished_at;
    assert!(reported_at.is_some());
    std::thread::sleep(Duration::from_millis(20));
    s.finish(reported, &complete("acc", 0.4), &[], 8.0).unwrap();
    let r = s.trial(reported).unwrap().unwrap();
    assert!(r.told);
    assert_eq!(r.finished_at, reported_at);
    assert_eq!(ids(&s.untold().unwrap()), [running, pending]);
    assert_eq!(ids(&s.unfinished().unwrap()), [running, pending]);
}

fn state_counts_count_each_state(store: &Store) {
    let mut s = store.open();
    assert!(s.state_counts().unwrap().is_empty());
    for i in 0..3 {
        s.insert_trial(&new_trial(&format!("p{i}")), &[]).unwrap();
    }
    s.insert_trial(
        &NewTrial {
            state: TrialState::Failed,
            ..new_trial("f")
        },
        &[],
    )
    .unwrap();
    s.claim_next("w", 60.0).unwrap().unwrap();
    let second = s.claim_next("w", 60.0).unwrap().unwrap().id;
    s.report(second, "w", &complete("acc", 1.0)).unwrap();
    assert_eq!(
        s.state_counts().unwrap(),
        [
            (TrialState::Complete, 1),
            (TrialState::Failed, 1),
            (TrialState::Pending, 1),
            (TrialState::Running, 1),
        ]
    );
}

fn worker_heartbeats_register_and_update(store: &Store) {
    let s = store.open();
    assert!(s.workers().unwrap().is_empty());
    let beat = WorkerBeat {
        name: "host-b:20".into(),
        host: "host-b".into(),
        pid: 20,
        trials_done: 0,
        current_trial: Some(1),
        exited: false,
    };
    s.worker_beat(&beat).unwrap();
    let first = s.workers().unwrap();
    assert_eq!(first.len(), 1);
    let w = &first[0];
    assert_eq!(
        (w.name.as_str(), w.host.as_str(), w.pid),
        ("host-b:20", "host-b", 20)
    );
    assert_eq!(
        (w.trials_done, w.current_trial, w.exited),
        (0, Some(1), false)
    );
    assert!(w.last_heartbeat >= w.started_at);
    assert!(w.last_heartbeat - w.started_at < 1.0);
    let clock = s.clock().unwrap();
    assert!(
        (clock - w.last_heartbeat).abs() < 60.0,
        "{clock} vs {}",
        w.last_heartbeat
    );

    std::thread::sleep(Duration::from_millis(20));
    s.worker_beat(&WorkerBeat {
        name: "host-a:10".into(),
        host: "host-a".into(),
        pid: 10,
        trials_done: 0,
        current_trial: None,
        exited: false,
    })
    .unwrap();
    s.worker_beat(&WorkerBeat {
        trials_done: 1,
        current_trial: None,
        exited: true,
        ..beat
    })
    .unwrap();
    let workers = s.workers().unwrap();
    assert_eq!(
        workers.iter().map(|w| w.name.as_str()).collect::<Vec<_>>(),
        ["host-a:10", "host-b:20"]
    );
    let b = &workers[1];
    assert_eq!(b.started_at, w.started_at, "started_at is kept");
    assert!(b.last_heartbeat > w.last_heartbeat);
    assert_eq!((b.trials_done, b.current_trial, b.exited), (1, None, true));
    assert!(!workers[0].exited);
}

fn metric_values_with_dots_and_dashes(store: &Store) {
    let mut s = store.open();
    let done = |metrics: &[(&str, f64)], fidelity| NewTrial {
        state: TrialState::Complete,
        fidelity,
        metrics: metrics.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        ..new_trial("c")
    };
    s.insert_trial(&done(&[("val.acc", 0.9), ("lat-ms", 3.5)], Some(0.5)), &[])
        .unwrap();
    s.insert_trial(&new_trial("pending"), &[]).unwrap();
    s.insert_trial(&done(&[("val.acc", 0.7)], None), &[])
        .unwrap();
    s.insert_trial(
        &NewTrial {
            state: TrialState::Failed,
            ..done(&[("val.acc", 0.1)], None)
        },
        &[],
    )
    .unwrap();
    let values = s
        .complete_metric_values(&["val.acc", "lat-ms", "missing"])
        .unwrap();
    assert_eq!(
        values,
        [
            (1, Some(0.5), vec![Some(0.9), Some(3.5), None]),
            (3, None, vec![Some(0.7), None, None]),
        ]
    );
    assert_eq!(
        s.complete_metric_values(&[]).unwrap(),
        [(1, Some(0.5), vec![]), (3, None, vec![])]
    );
}

fn one_coordinator_per_study(store: &Store) {
    let first = store.open();
    assert!(first.lock_coordinator().unwrap());
    let second = store.reopen();
    assert!(!second.lock_coordinator().unwrap());
    assert!(
        !second.lock_coordinator().unwrap(),
        "asking again changes nothing"
    );
    drop(first);
    // The PostgreSQL server ends the session (and its advisory lock) just after the
    // connection closes: wait a moment for it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !second.lock_coordinator().unwrap() {
        assert!(Instant::now() < deadline, "the lock was not released");
        std::thread::sleep(Duration::from_millis(50));
    }
    let third = store.reopen();
    assert!(!third.lock_coordinator().unwrap());
}

// --- SQLite only -------------------------------------------------------------------------

/// The tables of schema version 1: no worker columns on `trials`, no `workers` table.
const SCHEMA_V1: &str = "
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE trials (
        id INTEGER PRIMARY KEY,
        state TEXT NOT NULL,
        strategy TEXT NOT NULL,
        strategy_index INTEGER NOT NULL,
        choices TEXT NOT NULL,
        arch TEXT NOT NULL,
        hash TEXT NOT NULL,
        fidelity REAL,
        metrics TEXT NOT NULL DEFAULT '{}',
        details TEXT,
        error TEXT,
        worker TEXT,
        lease_expires REAL,
        created_at REAL NOT NULL,
        started_at REAL,
        finished_at REAL
    );
    CREATE INDEX trials_state ON trials (state);
    CREATE INDEX trials_hash ON trials (hash);
    CREATE TABLE checkpoints (
        strategy_index INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        state TEXT NOT NULL,
        updated_at REAL NOT NULL
    );
    INSERT INTO meta (key, value) VALUES ('schema_version', '1');
    INSERT INTO trials (state, strategy, strategy_index, choices, arch, hash, metrics,
                        worker, created_at, started_at, finished_at)
        VALUES ('complete', 'random', 0, '[1.0]', 'a', 'h1', '{\"acc\": 0.5}', 'local',
                10.0, 11.0, 12.0);
    INSERT INTO trials (state, strategy, strategy_index, choices, arch, hash, created_at)
        VALUES ('pending', 'random', 0, '[2.0]', 'b', 'h2', 13.0);
    INSERT INTO checkpoints VALUES (0, 'random', '{\"k\": 1}', 12.0);";

fn version_1_study() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    rusqlite::Connection::open(dir.path().join(DB_FILE))
        .unwrap()
        .execute_batch(SCHEMA_V1)
        .unwrap();
    dir
}

fn check_version_1_trials(trials: &[TrialRecord]) {
    assert_eq!(ids(trials), [1, 2]);
    assert_eq!(trials[0].state, TrialState::Complete);
    assert_eq!(trials[0].metrics["acc"], 0.5);
    assert_eq!(trials[0].values, [1.0]);
    assert_eq!(trials[0].started_at, Some(11.0));
    assert_eq!(trials[1].state, TrialState::Pending);
    assert_eq!(trials[1].hash, "h2");
    assert!(trials.iter().all(|t| t.told && t.requeues == 0));
}

#[test]
fn sqlite_version_1_files_are_read_as_they_are_and_migrated_when_opened_for_writing() {
    let dir = version_1_study();
    {
        let r = Storage::open_read_only(dir.path()).unwrap();
        let trials = r.trials().unwrap();
        check_version_1_trials(&trials);
        // Read-only opening leaves the file as it was.
        assert_eq!(r.meta("schema_version").unwrap().as_deref(), Some("1"));
        assert!(trials.iter().all(|t| t.attempts == 0));
        assert_eq!(
            r.state_counts().unwrap(),
            [(TrialState::Complete, 1), (TrialState::Pending, 1)]
        );
        assert_eq!(r.checkpoints().unwrap().len(), 1);
    }
    let mut s = Storage::open_existing(dir.path()).unwrap();
    assert_eq!(
        s.meta("schema_version").unwrap().as_deref(),
        Some(SCHEMA_VERSION.to_string().as_str())
    );
    let trials = s.trials().unwrap();
    check_version_1_trials(&trials);
    assert_eq!(trials[0].attempts, 1, "a started trial was claimed once");
    assert_eq!(trials[1].attempts, 0);
    assert_eq!(
        s.checkpoints().unwrap()[0].state,
        serde_json::json!({"k": 1})
    );
    // The version-2 features work on the migrated file.
    assert!(s.workers().unwrap().is_empty());
    let proposed = NewTrial {
        proposal: Some(1),
        parent: Some(1),
        ..new_trial("h3")
    };
    assert_eq!(s.insert_trial(&proposed, &[]).unwrap(), 3);
    assert_eq!(s.insert_trial(&proposed, &[]).unwrap(), 3);
    let parents: Vec<Option<u64>> = s.trials().unwrap().iter().map(|t| t.parent).collect();
    assert_eq!(parents, [None, None, Some(1)]);
    assert_eq!(s.claim_next("w", 60.0).unwrap().unwrap().id, 2);
    drop(s);
    // Opening again does not migrate twice.
    let s = Storage::open_existing(dir.path()).unwrap();
    assert_eq!(s.trials().unwrap().len(), 3);
    let r = Storage::open_read_only(dir.path()).unwrap();
    assert_eq!(r.trial(2).unwrap().unwrap().attempts, 1);
}

#[test]
fn sqlite_version_2_files_get_the_parent_column() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut s = Storage::create(dir.path()).unwrap();
        s.insert_trial(&new_trial("h1"), &[]).unwrap();
    }
    // Back to what version 2 wrote: no `parent` column.
    rusqlite::Connection::open(dir.path().join(DB_FILE))
        .unwrap()
        .execute_batch(
            "ALTER TABLE trials DROP COLUMN parent;
             UPDATE meta SET value = '2' WHERE key = 'schema_version';",
        )
        .unwrap();
    let r = Storage::open_read_only(dir.path()).unwrap();
    assert_eq!(r.trials().unwrap()[0].parent, None);
    assert_eq!(r.meta("schema_version").unwrap().as_deref(), Some("2"));
    drop(r);
    let mut s = Storage::open_existing(dir.path()).unwrap();
    assert_eq!(s.meta("schema_version").unwrap().as_deref(), Some("3"));
    let child = NewTrial {
        parent: Some(1),
        ..new_trial("h2")
    };
    let id = s.insert_trial(&child, &[]).unwrap();
    assert_eq!(s.trial(id).unwrap().unwrap().parent, Some(1));
    assert_eq!(s.trial(1).unwrap().unwrap().parent, None);
}

#[test]
fn sqlite_opening_a_missing_study_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let err = Storage::open_existing(&dir.path().join("nope"))
        .err()
        .unwrap();
    assert!(err.to_string().contains("nas search"), "{err}");
}

// --- PostgreSQL only ---------------------------------------------------------------------

/// `url` with a password (`secret` unless it has one), and that password.
fn with_password(url: &str) -> (String, String) {
    let scheme = url.find("://").unwrap() + 3;
    let at = scheme + url[scheme..].find('@').expect("the test URL names a user");
    let userinfo = &url[scheme..at];
    match userinfo.split_once(':') {
        Some((_, password)) => (url.to_string(), password.to_string()),
        // Trust authentication never asks for it, so a made-up one still connects.
        None => (
            format!("{}:secret{}", &url[..at], &url[at..]),
            "secret".into(),
        ),
    }
}

#[test]
fn postgres_version_2_databases_get_the_parent_column() {
    let store = Store::postgres();
    store.open().insert_trial(&new_trial("h1"), &[]).unwrap();
    let Store::Postgres(db) = &store else {
        unreachable!()
    };
    // Back to what version 2 wrote: no `parent` column.
    ::postgres::Client::connect(&db.url, ::postgres::NoTls)
        .unwrap()
        .batch_execute(
            "ALTER TABLE nas_trials DROP COLUMN parent; UPDATE nas_schema SET version = 2",
        )
        .unwrap();
    let r = store.open_study(STUDY, OpenMode::ReadOnly);
    assert_eq!(r.trials().unwrap()[0].parent, None);
    drop(r);
    let mut s = store.reopen();
    let child = NewTrial {
        parent: Some(1),
        ..new_trial("h2")
    };
    let id = s.insert_trial(&child, &[]).unwrap();
    assert_eq!(s.trial(id).unwrap().unwrap().parent, Some(1));
    assert_eq!(s.trial(1).unwrap().unwrap().parent, None);
}

#[test]
fn postgres_an_unreachable_server_fails_fast_and_says_where() {
    let url: StorageUrl = "postgresql://nas:secret@127.0.0.1:1/studies"
        .parse()
        .unwrap();
    let started = Instant::now();
    let err = Storage::connect(&url, STUDY, OpenMode::Create)
        .err()
        .unwrap()
        .to_string();
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    assert!(
        err.contains("cannot reach PostgreSQL at 127.0.0.1:1"),
        "{err}"
    );
    assert!(!err.contains("secret"), "{err}");
    let err = Storage::studies(&url).err().unwrap().to_string();
    assert!(err.contains("127.0.0.1:1"), "{err}");
    assert!(!err.contains("secret"), "{err}");
}

#[test]
fn postgres_a_missing_study_is_named_with_those_there() {
    let db = TestDb::create("missing");
    let (raw, password) = with_password(&db.url);
    let url: StorageUrl = raw.parse().unwrap();

    // An empty database: nothing to open, and nothing is created by looking.
    for mode in [OpenMode::Existing, OpenMode::ReadOnly] {
        let err = Storage::connect(&url, "gamma", mode)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("no study named `gamma`"), "{err}");
        assert!(err.contains("holds no study"), "{err}");
        assert!(!err.contains(&password), "{err}");
    }
    assert!(Storage::studies(&url).unwrap().is_empty());

    for name in ["alpha", "beta"] {
        let s = Storage::connect(&url, name, OpenMode::Create).unwrap();
        assert!(!s.location().contains(&password), "{}", s.location());
        assert!(s.location().contains(name), "{}", s.location());
        assert!(s.is_shared());
    }
    for mode in [OpenMode::Existing, OpenMode::ReadOnly] {
        let err = Storage::connect(&url, "gamma", mode)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("no study named `gamma`"), "{err}");
        assert!(err.contains("alpha, beta"), "{err}");
        assert!(!err.contains(&password), "{err}");
    }
    assert_eq!(Storage::studies(&url).unwrap(), ["alpha", "beta"]);

    // A database the server does not have: the server's answer, without the password.
    let (other, _) = with_password(&format!("{}_absent", db.url.split('?').next().unwrap()));
    let err = Storage::connect(&other.parse().unwrap(), STUDY, OpenMode::Create)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("_absent"), "{err}");
    assert!(!err.contains(&password), "{err}");
}
