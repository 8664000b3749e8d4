//! The Redis counters against a real `redis-server` started per test: windows, concurrency,
//! reservations, batched steps and their replies.

use super::*;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Instant;
use switchyard_filters::budget::{BudgetAccount, Period};

const MS: u64 = 1_000_000;

/// A throwaway `redis-server` on a free port, killed on drop.
struct TestRedis {
    port: u16,
    child: Option<Child>,
}

impl TestRedis {
    fn start() -> TestRedis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut r = TestRedis { port, child: None };
        r.restart();
        r
    }

    fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (is it installed?)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    async fn store(&self) -> RedisStore {
        RedisStore::connect(&self.url(), "test:").await.unwrap()
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

#[tokio::test]
async fn a_batch_runs_in_order_stops_at_the_first_refusal_and_a_cutoff_takes_what_is_left() {
    let srv = TestRedis::start();
    let s = srv.store().await;
    let reserve = |key, amount, cutoff| Step::Reserve {
        key,
        period_start: 0,
        limit: 100,
        amount,
        ttl_secs: None,
        cutoff,
    };
    let window = Step::Window {
        key: "w",
        limit_per_minute: 1,
        cost: 1,
        mode: WindowMode::Acquire,
    };
    let enter = Step::Enter { key: "c", limit: 5 };
    let out = s
        .steps(&[window.clone(), enter.clone(), reserve("b", 70, false)])
        .await
        .unwrap();
    assert_eq!(out.len(), 3);
    assert!(out.iter().all(|o| !o.refused()), "{out:?}");
    assert_eq!(out[2], Outcome::Reserved(Ok((70, 70))));
    // The window is full: nothing after it runs (the counter and the budget are untouched).
    let out = s
        .steps(&[window, enter, reserve("b", 10, false)])
        .await
        .unwrap();
    assert_eq!(out.len(), 1);
    assert!(out[0].refused());
    assert_eq!(s.totals("b", 0).await.unwrap(), (0, 70));
    // 50 more does not fit: refused, or with cutoff the 30 left are reserved.
    let out = s.steps(&[reserve("b", 50, false)]).await.unwrap();
    assert_eq!(out, vec![Outcome::Reserved(Err(70))]);
    let out = s.steps(&[reserve("b", 50, true)]).await.unwrap();
    assert_eq!(out, vec![Outcome::Reserved(Ok((100, 30)))]);
    // A release: settle both, leave the concurrency limit once.
    let settle = |reserved| Step::Settle {
        key: "b",
        period_start: 0,
        reserved,
        actual: 5,
        ttl_secs: None,
    };
    let out = s
        .steps(&[settle(70), settle(30), Step::Exit { key: "c", count: 1 }])
        .await
        .unwrap();
    assert_eq!(out, vec![Outcome::Done; 3]);
    assert_eq!(s.totals("b", 0).await.unwrap(), (10, 10));
    // Groups (several requests in one call) each stop at their own refusal.
    let full = [Step::Window {
        key: "w",
        limit_per_minute: 1,
        cost: 1,
        mode: WindowMode::Acquire,
    }];
    let fits = [reserve("g", 10, false), reserve("g", 10, false)];
    let out = s.groups(&[&full[..], &fits[..], &full[..]]).await.unwrap();
    assert_eq!(out.len(), 3);
    assert!(out[0].len() == 1 && out[0][0].refused());
    assert_eq!(
        out[1],
        vec![
            Outcome::Reserved(Ok((10, 10))),
            Outcome::Reserved(Ok((20, 10)))
        ]
    );
    assert!(out[2].len() == 1 && out[2][0].refused());
}

/// One call of many requests naming the same counters (each read once, written once at the
/// end) leaves what the same steps one call each leave.
#[tokio::test]
async fn steps_sharing_counters_in_one_call_match_one_call_each() {
    let srv = TestRedis::start();
    let s = srv.store().await;
    let admission = |w: &'static str, c: &'static str, b: &'static str| {
        vec![
            Step::Window {
                key: w,
                limit_per_minute: 3,
                cost: 1,
                mode: WindowMode::Acquire,
            },
            Step::Enter { key: c, limit: 4 },
            Step::Reserve {
                key: b,
                period_start: 0,
                limit: 100,
                amount: 30,
                ttl_secs: Some(600),
                cutoff: false,
            },
        ]
    };
    let release = |c: &'static str, b: &'static str| {
        vec![
            Step::Settle {
                key: b,
                period_start: 0,
                reserved: 30,
                actual: 7,
                ttl_secs: Some(600),
            },
            Step::Exit { key: c, count: 1 },
        ]
    };
    // Batched: five admissions in one call, then two releases and a sixth admission.
    let one: Vec<Vec<Step<&str>>> = (0..5).map(|_| admission("w1", "c1", "b1")).collect();
    let refs: Vec<&[Step<&str>]> = one.iter().map(|g| g.as_slice()).collect();
    let batched = s.groups(&refs).await.unwrap();
    let second = [
        release("c1", "b1"),
        release("c1", "b1"),
        admission("w1", "c1", "b1"),
    ];
    let refs: Vec<&[Step<&str>]> = second.iter().map(|g| g.as_slice()).collect();
    let batched_after = s.groups(&refs).await.unwrap();
    // The same steps, one call each, on other counters.
    let mut alone = Vec::new();
    for _ in 0..5 {
        alone.push(s.steps(&admission("w2", "c2", "b2")).await.unwrap());
    }
    let mut alone_after = Vec::new();
    for steps in [
        release("c2", "b2"),
        release("c2", "b2"),
        admission("w2", "c2", "b2"),
    ] {
        alone_after.push(s.steps(&steps).await.unwrap());
    }
    // Windows answer reset times from the server's clock; compare what must agree.
    let shape = |groups: &[Vec<Outcome>]| -> Vec<Vec<String>> {
        groups
            .iter()
            .map(|g| {
                g.iter()
                    .map(|o| match o {
                        Outcome::Window(w) => format!("window {} {}", w.allowed, w.remaining),
                        other => format!("{other:?}"),
                    })
                    .collect()
            })
            .collect()
    };
    assert_eq!(shape(&batched), shape(&alone));
    assert_eq!(shape(&batched_after), shape(&alone_after));
    // Three fit the window; the fourth and fifth stop at it (nothing else of theirs ran);
    // three reservations of 30 fit a budget of 100.
    assert_eq!(
        shape(&batched)[3..],
        [
            vec!["window false 0".to_string()],
            vec!["window false 0".to_string()]
        ]
    );
    assert_eq!(s.totals("b1", 0).await.unwrap(), (14, 14 + 30));
    assert_eq!(
        s.totals("b1", 0).await.unwrap(),
        s.totals("b2", 0).await.unwrap()
    );
    let mut conn = s.conn.clone();
    for key in ["c1", "c2"] {
        let n: i64 = redis::cmd("GET")
            .arg(format!("test:conc:{key}"))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(n, 1, "{key}: three entered, two left");
        let ttl: i64 = redis::cmd("PTTL")
            .arg(format!("test:conc:{key}"))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(ttl > 0, "{key} keeps its expiry: {ttl}");
    }
}

#[tokio::test]
async fn budget_semantics_match_the_local_account() {
    let srv = TestRedis::start();
    let s = srv.store().await;
    let limit = 1_000;
    let local = BudgetAccount::new(limit, 0.8, Period::Total, 0, 0);
    // (reserve amount, actual cost when settled)
    let ops: &[(u64, u64)] = &[
        (300, 100),
        (400, 450),
        (600, 0),
        (500, 500),
        (2_000, 0),
        (150, 10),
        (0, 0),
        (200, 300),
    ];
    let mut held = Vec::new();
    for (i, &(amount, actual)) in ops.iter().enumerate() {
        let l = local.reserve(amount, 0);
        let r = s.reserve("acct", 0, limit, amount, None).await.unwrap();
        match (&l, &r) {
            (Ok(_), Ok(after)) => assert_eq!(*after, local.committed(0), "op {i}"),
            (Err(e), Err(now)) => assert_eq!(*now, e.committed, "op {i}"),
            _ => panic!("op {i}: local {l:?} vs redis {r:?}"),
        }
        if let Ok(res) = l {
            held.push((res, actual));
        }
        // Settle every other reservation right away; the rest stay in flight.
        if i % 2 == 1 {
            if let Some((res, actual)) = held.pop() {
                local.settle(res, actual, 0);
                s.settle("acct", 0, res.amount, actual, None).await.unwrap();
            }
        }
        let (spent, committed) = s.totals("acct", 0).await.unwrap();
        assert_eq!(
            (spent, committed),
            (local.spent(0), local.committed(0)),
            "op {i}"
        );
    }
    for (res, actual) in held.drain(..) {
        local.settle(res, actual, 0);
        s.settle("acct", 0, res.amount, actual, None).await.unwrap();
    }
    let totals = s.totals("acct", 0).await.unwrap();
    assert_eq!(totals, (local.spent(0), local.committed(0)));
    assert_eq!(totals.0, totals.1, "nothing reserved any more");

    // Over-settling a reservation never drives committed below zero.
    s.settle("zero", 0, 500, 7, None).await.unwrap();
    assert_eq!(s.totals("zero", 0).await.unwrap(), (7, 7));

    // A new period is a new key; settling a stale reservation lands there with reserved = 0.
    let day: u64 = 86_400;
    let r = s.reserve("daily", 0, 100, 60, Some(2 * day)).await.unwrap();
    assert_eq!(r, Ok(60));
    s.settle("daily", day as i64, 0, 40, Some(2 * day))
        .await
        .unwrap();
    assert_eq!(s.totals("daily", day as i64).await.unwrap(), (40, 40));
    assert_eq!(s.totals("daily", 0).await.unwrap(), (0, 60));
    let mut c = s.conn.clone();
    let ttl: i64 = redis::cmd("TTL")
        .arg("test:budget:daily:0")
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(ttl > day as i64 && ttl <= 2 * day as i64, "ttl {ttl}");
    let ttl: i64 = redis::cmd("TTL")
        .arg("test:budget:acct:0")
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(ttl, -1, "total budgets never expire");

    // Seeding only fills a period that has no key yet.
    s.seed("seeded", 0, 250, None).await.unwrap();
    assert_eq!(s.totals("seeded", 0).await.unwrap(), (250, 250));
    s.seed("seeded", 0, 999, None).await.unwrap();
    assert_eq!(s.totals("seeded", 0).await.unwrap(), (250, 250));
    assert_eq!(
        s.reserve("seeded", 0, 300, 60, None).await.unwrap(),
        Err(250)
    );
    assert_eq!(
        s.reserve("seeded", 0, 300, 50, None).await.unwrap(),
        Ok(300)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_reservations_from_two_clients_never_overshoot() {
    let srv = TestRedis::start();
    let a = Arc::new(srv.store().await);
    let b = Arc::new(srv.store().await);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200 {
        let s = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.spawn(async move { s.reserve("shared", 0, 500, 10, None).await.unwrap() });
    }
    let mut ok = 0;
    while let Some(r) = tasks.join_next().await {
        match r.unwrap() {
            Ok(after) => {
                assert!(after <= 500, "committed {after}");
                ok += 1;
            }
            Err(now) => assert!(now <= 500, "committed {now}"),
        }
    }
    assert_eq!(ok, 50);
    assert_eq!(a.totals("shared", 0).await.unwrap(), (0, 500));
}

/// The Redis server's current second, waited for so that at least `margin` of it is left.
async fn server_second(s: &RedisStore, margin: Duration) -> u64 {
    let mut conn = s.conn.clone();
    loop {
        let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(&mut conn).await.unwrap();
        let left = Duration::from_micros(1_000_000 - micros);
        if left >= margin {
            return secs;
        }
        tokio::time::sleep(left + Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sliding_window_admits_the_limit_back_to_back_across_two_clients() {
    let srv = TestRedis::start();
    let a = Arc::new(srv.store().await);
    let b = Arc::new(srv.store().await);
    // Warm up the script cache so that the calls below are fast.
    a.sliding_window("other", 60, 1, true).await.unwrap();
    b.sliding_window("other", 60, 1, true).await.unwrap();

    // 60/min: 60 back to back pass, wherever they land; the rest wait until the first
    // second's units leave the window, 60 to 61 s later.
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..100 {
        let s = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.spawn(async move { s.sliding_window("k", 60, 1, false).await.unwrap() });
    }
    let mut outcomes = Vec::new();
    while let Some(r) = tasks.join_next().await {
        outcomes.push(r.unwrap());
    }
    let passed = outcomes.iter().filter(|o| o.allowed).count();
    assert_eq!(passed, 60);
    for o in outcomes.iter().filter(|o| !o.allowed) {
        assert!(
            o.retry_after_ns > 58_000 * MS && o.retry_after_ns <= 61_000 * MS,
            "retry after {} ns",
            o.retry_after_ns
        );
        assert_eq!(o.remaining, 0);
    }
    assert!(outcomes
        .iter()
        .any(|o| o.allowed && o.remaining == 59 && o.reset_ns <= 61_000 * MS));
    // Checking takes nothing and is refused at the limit, on either client.
    let d = b.sliding_window("k", 60, 1, true).await.unwrap();
    assert!(!d.allowed && d.retry_after_ns > 58_000 * MS, "{d:?}");
    assert!(!a.sliding_window("k", 60, 1, false).await.unwrap().allowed);

    // The key holds one field per second and expires a little after its newest is counted.
    let mut conn = a.conn.clone();
    let pttl: i64 = redis::cmd("PTTL")
        .arg("test:win:k")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!((60_000..=62_000).contains(&pttl), "pttl {pttl}");

    // The window is the seconds s-60..=s of the server's clock: a second 60 s old counts,
    // one 61 s old has left and is deleted (planted with the bookkeeping a call keeps: the
    // sum `n` and the oldest second `h`).
    let now = server_second(&a, Duration::from_millis(300)).await;
    let _: () = redis::cmd("HSET")
        .arg("test:win:edge")
        .arg(now - 61)
        .arg(2)
        .arg(now - 60)
        .arg(1)
        .arg("n")
        .arg(3)
        .arg("h")
        .arg(now - 61)
        .query_async(&mut conn)
        .await
        .unwrap();
    let o = a.sliding_window("edge", 2, 1, false).await.unwrap();
    assert_eq!((o.allowed, o.remaining), (true, 0), "{o:?}");
    // The second 60 s old leaves within the second: that is the reset.
    assert!(o.reset_ns <= 1_000 * MS, "{o:?}");
    let d = b.sliding_window("edge", 2, 1, false).await.unwrap();
    assert!(!d.allowed);
    assert_eq!(d.retry_after_ns, 1_000 * MS, "at least a second");
    let fields: Vec<String> = redis::cmd("HKEYS")
        .arg("test:win:edge")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!fields.contains(&(now - 61).to_string()), "{fields:?}");

    // Tokens: checked before, charged after with the real usage.
    let first = a.sliding_window("tokens", 1000, 1, true).await.unwrap();
    assert!(first.allowed);
    assert_eq!((first.remaining, first.reset_ns), (1000, 0));
    a.sliding_window_charge("tokens", 1000, 400).await.unwrap();
    assert_eq!(
        b.sliding_window("tokens", 1000, 1, true)
            .await
            .unwrap()
            .remaining,
        600
    );
    a.sliding_window_charge("tokens", 1000, 5000).await.unwrap();
    let d = b.sliding_window("tokens", 1000, 1, true).await.unwrap();
    assert!(!d.allowed);
    assert!(
        d.retry_after_ns > 58_000 * MS && d.retry_after_ns <= 61_000 * MS,
        "{d:?}"
    );
}

#[tokio::test]
async fn a_window_drops_the_seconds_that_left_it_and_keeps_its_sum() {
    let srv = TestRedis::start();
    let s = srv.store().await;
    let mut conn = s.conn.clone();
    // Seconds 75 and 64 s old have left (a gap of idle seconds between them), 30 and 5 s
    // old are counted: 7 + 2 of a limit of 10.
    let now = server_second(&s, Duration::from_millis(300)).await;
    let _: () = redis::cmd("HSET")
        .arg("test:win:gap")
        .arg(&[now - 75, 4, now - 64, 1, now - 30, 7, now - 5, 2])
        .arg(&["n", "14", "h"])
        .arg(now - 75)
        .query_async(&mut conn)
        .await
        .unwrap();
    let o = s.sliding_window("gap", 10, 1, false).await.unwrap();
    assert_eq!((o.allowed, o.remaining), (true, 0), "{o:?}");
    // The reset is when the oldest counted second (30 s old) leaves: 30 to 31 s.
    assert!(
        o.reset_ns > 30_000 * MS && o.reset_ns <= 31_000 * MS,
        "{o:?}"
    );
    let (n, h): (u64, u64) = redis::cmd("HMGET")
        .arg("test:win:gap")
        .arg(&["n", "h"])
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!((n, h), (10, now - 30));
    let fields: Vec<String> = redis::cmd("HKEYS")
        .arg("test:win:gap")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(fields.len(), 5, "{fields:?}");
    // Full: the next unit waits until the 7 units 30 s old leave, not the 2 of 5 s ago.
    let d = s.sliding_window("gap", 10, 1, false).await.unwrap();
    assert!(!d.allowed);
    assert_eq!(d.retry_after_ns, d.reset_ns, "{d:?}");
    assert!(
        d.retry_after_ns > 29_000 * MS && d.retry_after_ns <= 31_000 * MS,
        "{d:?}"
    );
    // A window whose every second has left is empty again.
    let _: () = redis::cmd("HSET")
        .arg("test:win:old")
        .arg(&[now - 90, 9])
        .arg(&["n", "9", "h"])
        .arg(now - 90)
        .query_async(&mut conn)
        .await
        .unwrap();
    let c = s.sliding_window("old", 10, 1, true).await.unwrap();
    assert_eq!((c.allowed, c.remaining, c.reset_ns), (true, 10, 0), "{c:?}");
    let left: Vec<String> = redis::cmd("HKEYS")
        .arg("test:win:old")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test]
async fn a_redis_that_forgot_the_script_gets_it_again() {
    let srv = TestRedis::start();
    let s = srv.store().await;
    assert!(s.sliding_window("f", 5, 1, false).await.unwrap().allowed);
    let mut conn = s.conn.clone();
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut conn)
        .await
        .unwrap();
    let o = s.sliding_window("f", 5, 1, false).await.unwrap();
    assert_eq!((o.allowed, o.remaining), (true, 3));
}

#[tokio::test]
async fn the_sliding_window_matches_the_local_limiter() {
    use switchyard_filters::ratelimit::SlidingWindow;
    let srv = TestRedis::start();
    let s = srv.store().await;
    let local = SlidingWindow::per_minute(5);
    server_second(&s, Duration::from_millis(300)).await;
    for i in 0..8 {
        let l = local.acquire(1, 0);
        let r = s.sliding_window("m", 5, 1, false).await.unwrap();
        assert_eq!(l.is_ok(), r.allowed, "call {i}");
        match l {
            Ok(a) => {
                assert_eq!(a.remaining, r.remaining, "call {i}");
                // Both: the time until this second's units leave, 60 to 61 s.
                assert!(a.reset_ns - r.reset_ns < 1_000 * MS, "call {i}: {r:?}");
            }
            Err(d) => {
                assert!(d.retry_after_ns - r.retry_after_ns < 1_000 * MS, "call {i}")
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_limit_across_two_clients() {
    let srv = TestRedis::start();
    let a = srv.store().await;
    let b = srv.store().await;
    assert!(a.enter("c", 2).await.unwrap());
    assert!(b.enter("c", 2).await.unwrap());
    assert!(!a.enter("c", 2).await.unwrap());
    assert!(!b.enter("c", 2).await.unwrap());
    b.exit("c").await.unwrap();
    assert!(a.enter("c", 2).await.unwrap());
    assert!(!b.enter("c", 2).await.unwrap());
    let mut conn = a.conn.clone();
    let pttl: i64 = redis::cmd("PTTL")
        .arg("test:conc:c")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(pttl > 590_000 && pttl <= 600_000, "pttl {pttl}");
    // Exits beyond the entries never go below zero.
    for _ in 0..4 {
        a.exit("c").await.unwrap();
    }
    let n: Option<i64> = redis::cmd("GET")
        .arg("test:conc:c")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(n.unwrap_or(0) == 0, "{n:?}");
    assert!(b.enter("c", 2).await.unwrap());
    assert!(a.enter("c", 2).await.unwrap());
    assert!(!a.enter("c", 2).await.unwrap());
}

#[tokio::test]
async fn connect_fails_fast_when_unreachable() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let t = Instant::now();
    let r = RedisStore::connect(&format!("redis://127.0.0.1:{port}/"), "x:").await;
    assert!(r.is_err());
    assert!(
        t.elapsed() < Duration::from_millis(1_500),
        "{:?}",
        t.elapsed()
    );
    assert!(matches!(
        RedisStore::connect("nope://", "x:").await,
        Err(RedisStoreError::Url(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fails_fast_while_down_and_recovers_by_itself() {
    let mut srv = TestRedis::start();
    let s = srv.store().await;
    assert_eq!(s.reserve("r", 0, 100, 10, None).await.unwrap(), Ok(10));

    srv.kill();
    let down = Instant::now();
    for i in 0..5 {
        let t = Instant::now();
        let r = s.reserve("r", 0, 100, 10, None).await;
        let took = t.elapsed();
        assert!(r.is_err(), "call {i} while down: {r:?}");
        assert!(
            took < Duration::from_millis(1_100),
            "call {i} took {took:?}"
        );
        eprintln!("down call {i}: {took:?}: {}", r.unwrap_err());
        assert!(s.sliding_window("g", 60, 1, false).await.is_err());
        assert!(s.enter("c", 1).await.is_err());
    }
    eprintln!("down for {:?}", down.elapsed());

    srv.restart();
    let up = Instant::now();
    let mut attempts = 0;
    loop {
        attempts += 1;
        match s.reserve("r", 0, 100, 10, None).await {
            // A fresh server: the scripts were flushed too, and are loaded again.
            Ok(r) => {
                assert_eq!(r, Ok(10));
                break;
            }
            Err(e) => {
                assert!(up.elapsed() < Duration::from_secs(5), "not back: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    eprintln!(
        "recovered {:?} after restart ({attempts} attempts)",
        up.elapsed()
    );
    assert!(s.sliding_window("g", 60, 1, false).await.unwrap().allowed);
    assert!(s.enter("c", 1).await.unwrap());
}
