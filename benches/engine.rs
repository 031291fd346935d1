//! Criterion benchmarks of the hot paths: decoding + validating a JSON line, assessing
//! a customer, and pushing a stream of events through the engine (in memory).

use churnwatch::core::engine::{Engine, NoSource};
use churnwatch::core::event::{decode_json_line, Input};
use churnwatch::core::policy::Policy;
use churnwatch::core::time::Ts;
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

// The allocator the binary runs with (glibc's malloc would dominate the profile, and
// its arenas contend between the shards' threads).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const DAY: i64 = 86_400_000;

/// A deterministic stream: `customers` customers, each visiting every 60–240 days with
/// a repair order, over about three years, in event-time order.
fn stream(customers: u32) -> Vec<String> {
    let start = Ts::ymd_hms(2021, 1, 1, 0, 0, 0).0;
    let mut v = Vec::new();
    for c in 0..customers {
        let cadence = 60 + (c * 37 % 180) as i64;
        let mut t = start + (c as i64 * 7919 % 200) * DAY + (c as i64 % 86_400) * 1000;
        let mut km = 5_000.0 + (c % 100) as f64 * 300.0;
        let mut n = 0;
        while t < start + 1100 * DAY && n < 40 {
            km += cadence as f64 * 40.0;
            v.push((t, format!(
                r#"{{"type":"repair_order","event_id":"r{c}-{n}","event_time":"{}","dealer_id":"D{}","customer_id":"C{c}","vin":"LSVAA4182E2{:06}","vehicle_model":"Lavida","ro_number":"RO{c}-{n}","ro_type":"{}","mileage_km":{km:.0},"labor_amount":200.0,"parts_amount":{}.0,"total_amount":{}.0}}"#,
                Ts(t).to_rfc3339(), c % 20, c, if n % 2 == 0 { "maintenance" } else { "general_repair" },
                300 + c % 700, 500 + c % 700)));
            t += cadence * DAY + (c as i64 * 13 % 10) * DAY;
            n += 1;
        }
    }
    v.sort();
    v.into_iter().map(|(_, s)| s).collect()
}

fn bench_decode(c: &mut Criterion) {
    let lines = stream(200);
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(lines.len() as u64));
    g.bench_function("json_line_validate", |b| {
        b.iter(|| {
            for l in &lines {
                black_box(decode_json_line(l).unwrap());
            }
        })
    });
    g.finish();
}

fn bench_engine(c: &mut Criterion) {
    let mut g = c.benchmark_group("engine");
    g.sample_size(10);
    // With a fitted model every status change also carries P(alive), expected visits
    // and CLV (`process_scored`); the P(alive) rules add their own timers and warnings
    // (`process_p_alive_rules`), a different workload.
    let scored = Policy {
        model: Some(churnwatch::model::params::ModelParams {
            model: churnwatch::model::params::VisitModel::MbgNbd,
            time_unit_days: 7.0,
            visit: churnwatch::model::params::BgParams {
                r: 0.9,
                alpha: 12.0,
                a: 0.4,
                b: 2.5,
            },
            erlang_k: None,
            spend: Some(churnwatch::model::params::GgParams {
                p: 6.0,
                q: 4.0,
                v: 300.0,
            }),
            calibration_end: "2024-01-01T00:00:00Z".into(),
            customers: 1,
            log_likelihood: 0.0,
        }),
        ..Policy::default()
    };
    let mut p_alive_rules = scored.clone();
    p_alive_rules.prediction.p_alive_prevent_below = 0.3;
    for customers in [1_000u32, 10_000] {
        let inputs: Vec<Input> = stream(customers)
            .iter()
            .map(|l| decode_json_line(l).unwrap().input)
            .collect();
        g.throughput(Throughput::Elements(inputs.len() as u64));
        for (name, policy) in [
            ("process", Policy::default()),
            ("process_scored", scored.clone()),
            ("process_p_alive_rules", p_alive_rules.clone()),
        ] {
            g.bench_with_input(BenchmarkId::new(name, customers), &inputs, |b, inputs| {
                b.iter(|| {
                    let mut e = Engine::new(policy.clone());
                    let mut out = Vec::new();
                    for i in inputs {
                        e.process(i.clone(), &NoSource, &mut out).unwrap();
                    }
                    e.flush(&NoSource, &mut out).unwrap();
                    black_box(out.len())
                })
            });
        }
    }
    g.finish();
}

fn bench_assess(c: &mut Criterion) {
    let inputs: Vec<Input> = stream(100)
        .iter()
        .map(|l| decode_json_line(l).unwrap().input)
        .collect();
    let mut e = Engine::new(Policy::default());
    let mut out = Vec::new();
    for i in inputs {
        e.process(i, &NoSource, &mut out).unwrap();
    }
    e.flush(&NoSource, &mut out).unwrap();
    let state = e.cached("C7").expect("customer present").clone();
    let policy = Policy::default();
    let t = Ts::ymd_hms(2024, 6, 1, 0, 0, 0);
    c.bench_function("assess_one_customer", |b| {
        b.iter(|| black_box(state.assess(black_box(t), &policy)))
    });
    c.bench_function("next_deadline_one_customer", |b| {
        b.iter(|| black_box(state.next_deadline(black_box(t), &policy)))
    });
}

fn bench_scoring(c: &mut Criterion) {
    use churnwatch::model::bgnbd;
    use churnwatch::model::gamma_gamma::clv;
    use churnwatch::model::params::{BgParams, GgParams, Rfm, VisitModel};
    let bg = BgParams {
        r: 0.9,
        alpha: 12.0,
        a: 0.4,
        b: 2.5,
    };
    let gg = GgParams {
        p: 6.0,
        q: 4.0,
        v: 300.0,
    };
    let rfm = Rfm {
        x: 6.0,
        t_x: 120.0,
        t: 200.0,
    };
    for m in [VisitModel::BgNbd, VisitModel::MbgNbd] {
        c.bench_function(&format!("p_alive/{m:?}"), |b| {
            b.iter(|| black_box(bgnbd::p_alive(m, &bg, black_box(rfm))))
        });
        c.bench_function(&format!("expected_visits_52w/{m:?}"), |b| {
            b.iter(|| black_box(bgnbd::expected_visits(m, &bg, black_box(rfm), 52.0)))
        });
        c.bench_function(&format!("clv_36m/{m:?}"), |b| {
            b.iter(|| black_box(clv(m, &bg, &gg, black_box(rfm), 800.0, 36, 0.01, 7.0)))
        });
    }
    // MBG/CNBD-k (regular visitors) through the engine's entry point, for a few k;
    // k = 1 is MBG/NBD by the same code path.
    for k in [1u32, 2, 3, 4, 8] {
        let scorer = churnwatch::model::visit::VisitScorer {
            model: VisitModel::MbgCnbdK,
            params: BgParams {
                alpha: bg.alpha / f64::from(k),
                ..bg
            },
            k,
        };
        c.bench_function(&format!("p_alive/MbgCnbdK/k{k}"), |b| {
            b.iter(|| black_box(scorer.p_alive(black_box(rfm))))
        });
        c.bench_function(&format!("expected_visits_52w/MbgCnbdK/k{k}"), |b| {
            b.iter(|| black_box(scorer.expected_visits(black_box(rfm), 52.0)))
        });
        c.bench_function(&format!("clv_36m/MbgCnbdK/k{k}"), |b| {
            b.iter(|| {
                black_box(churnwatch::model::gamma_gamma::clv_scored(
                    &scorer,
                    &gg,
                    black_box(rfm),
                    (6.0, 800.0),
                    36,
                    0.01,
                    7.0,
                ))
            })
        });
    }
}

/// The engine sharded over threads (`driver::Shards`, as replay runs it: batches of
/// 4,096 records, each batch's shards in parallel) against one engine on the same
/// stream in the same run: how the engine alone scales with the cores it gets.
fn bench_shards(c: &mut Criterion) {
    use churnwatch::driver::Shards;
    let mut g = c.benchmark_group("shards");
    g.sample_size(10);
    let inputs: Vec<Input> = stream(20_000)
        .iter()
        .map(|l| decode_json_line(l).unwrap().input)
        .collect();
    g.throughput(Throughput::Elements(inputs.len() as u64));
    g.bench_with_input("one_engine", &inputs, |b, inputs| {
        b.iter(|| {
            let mut e = Engine::new(Policy::default());
            let mut out = Vec::new();
            for i in inputs {
                e.process(i.clone(), &NoSource, &mut out).unwrap();
            }
            e.flush(&NoSource, &mut out).unwrap();
            black_box(out.len())
        })
    });
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    for n in (1..=cores.max(2)).filter(|n| n.is_power_of_two() || *n == cores) {
        g.bench_with_input(BenchmarkId::new("sharded", n), &inputs, |b, inputs| {
            b.iter(|| {
                let mut s = Shards::restore(Policy::default(), Default::default(), Vec::new(), n);
                let mut out = Vec::new();
                for batch in inputs.chunks(4096) {
                    for i in batch {
                        s.push(i.clone());
                    }
                    s.run(&NoSource, &mut out).unwrap();
                }
                s.flush();
                s.run(&NoSource, &mut out).unwrap();
                black_box(out.len())
            })
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    bench_decode,
    bench_engine,
    bench_shards,
    bench_assess,
    bench_scoring
);
criterion_main!(benches);
