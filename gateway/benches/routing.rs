//! Criterion bench of deployment selection per strategy (the plan built for each request) and of
//! a breaker check, on a model with four deployments.
//!
//! cargo bench -p switchyard --bench routing

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use std::sync::Arc;
use std::time::Duration;
use switchyard::config;
use switchyard::ops::telemetry::Metrics;
use switchyard::routing::router::{plan, PlanInput};
use switchyard::routing::state::State;

fn state(strategy: &str) -> State {
    let text = format!(
        r#"
server: {{ listen: ["127.0.0.1:1"] }}
providers:
  - {{ name: a, kind: mock }}
  - {{ name: b, kind: mock }}
  - {{ name: c, kind: mock }}
  - {{ name: d, kind: mock }}
models:
  - name: m
    strategy: {strategy}
    max_cost_per_request: 0.01
    deployments:
      - {{ provider: a, model: x, weight: 1, price: {{ input_per_mtok: 0.15, output_per_mtok: 0.6 }} }}
      - {{ provider: b, model: y, weight: 2, price: {{ input_per_mtok: 0.8, output_per_mtok: 4 }} }}
      - {{ provider: c, model: z, weight: 3, price: {{ input_per_mtok: 3, output_per_mtok: 15 }} }}
      - {{ provider: d, model: w, weight: 4, price: {{ input_per_mtok: 0.1, output_per_mtok: 0.4 }} }}
"#
    );
    let cfg = config::parse(&text, &|_| None).expect("config");
    State::build(Arc::new(cfg), &Metrics::new())
}

fn benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("plan");
    for strategy in [
        "priority",
        "round_robin",
        "weighted",
        "least_latency",
        "cost",
    ] {
        let s = state(strategy);
        let model = s.model("m").expect("model");
        for (i, d) in model.deployments.iter().enumerate() {
            d.runtime.observe_ttfb(
                Duration::from_millis(20 + 10 * i as u64),
                switchyard::clock::now_ms(),
            );
        }
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        g.bench_function(strategy, |b| {
            b.iter(|| {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                let input = PlanInput {
                    body_bytes: 2000,
                    max_tokens: Some(256),
                    seed,
                    requested_model: "m",
                    ..Default::default()
                };
                plan(black_box(model), &input).len()
            })
        });
    }
    g.finish();
    let s = state("priority");
    let d = &s.model("m").expect("model").deployments[0];
    let policy = config::RoutingPolicy::default().breaker;
    c.bench_function("breaker_acquire", |b| {
        b.iter(|| {
            d.runtime
                .acquire(&policy, black_box(switchyard::clock::now_ms()))
        })
    });
}

criterion_group!(routing, benches);
criterion_main!(routing);
