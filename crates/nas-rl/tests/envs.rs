//! CartPole and Acrobot against hand-computed steps, their end-of-episode rules, seeding,
//! and the returns of reference policies.

use std::cell::RefCell;

use nas_rl::*;
use rand::{Rng, SeedableRng};

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * (1.0 + b.abs())
}

fn assert_state(got: [f64; 4], want: [f64; 4]) {
    assert_state_within(got, want, 1e-12);
}

fn assert_state_within(got: [f64; 4], want: [f64; 4], tol: f64) {
    for i in 0..4 {
        assert!(
            close(got[i], want[i], tol),
            "component {i}: {got:?} vs {want:?}"
        );
    }
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

#[test]
fn cartpole_single_step_follows_the_euler_equations() {
    // Written out from Barto et al. with m_c = 1, m_p = 0.1, l = 0.5, g = 9.8, tau = 0.02.
    let s: [f64; 4] = [0.1, -0.3, 0.05, 0.4];
    for (action, f) in [(0, -10.0), (1, 10.0)] {
        let (th, thd) = (s[2], s[3]);
        let temp = (f + 0.05 * thd * thd * th.sin()) / 1.1;
        let th_acc = (9.8 * th.sin() - th.cos() * temp)
            / (0.5 * (4.0 / 3.0 - 0.1 * th.cos() * th.cos() / 1.1));
        let x_acc = temp - 0.05 * th_acc * th.cos() / 1.1;
        let want = [
            s[0] + 0.02 * s[1],
            s[1] + 0.02 * x_acc,
            s[2] + 0.02 * s[3],
            s[3] + 0.02 * th_acc,
        ];
        let mut env = CartPole::new();
        env.set_state(s);
        let step = env.step(action);
        assert_state(env.state(), want);
        let obs: Vec<f32> = want.iter().map(|&v| v as f32).collect();
        assert_eq!(step.observation, obs);
        assert_eq!(
            (step.reward, step.terminated, step.truncated),
            (1.0, false, false)
        );
    }
    // Upright and at rest, a right push accelerates the cart right and tips the pole left.
    let mut env = CartPole::new();
    env.set_state([0.0; 4]);
    env.step(1);
    let [x, xd, th, thd] = env.state();
    assert!(
        x == 0.0 && xd > 0.0 && th == 0.0 && thd < 0.0,
        "{:?}",
        env.state()
    );
}

#[test]
fn cartpole_terminates_past_the_thresholds_and_truncates_at_500() {
    let limit = 12.0_f64.to_radians();
    let mut env = CartPole::new();
    // theta moves by tau * theta_dot = 0.002 rad: from just inside to just outside.
    env.set_state([0.0, 0.0, limit - 0.001, 0.1]);
    let s = env.step(1);
    assert!(s.terminated && !s.truncated && s.reward == 1.0, "{s:?}");
    env.set_state([0.0, 0.0, -(limit - 0.003), -0.1]);
    assert!(!env.step(0).terminated, "still inside");
    env.set_state([2.399, 0.1, 0.0, 0.0]);
    assert!(env.step(1).terminated, "cart leaves the track");
    env.set_state([-2.399, -0.1, 0.0, 0.0]);
    assert!(env.step(0).terminated);

    // Pushing the cart under the falling pole keeps it up until the step limit.
    env.set_state([0.0; 4]);
    for t in 1..=500 {
        let [_, _, th, thd] = env.state();
        let s = env.step(usize::from(th + thd > 0.0));
        assert!(!s.terminated, "step {t}: {:?}", env.state());
        assert_eq!(s.truncated, t == 500, "step {t}");
        assert_eq!(env.steps(), t);
    }
}

#[test]
#[should_panic(expected = "call reset first")]
fn stepping_after_the_end_panics() {
    let mut env = CartPole::new();
    env.set_state([0.0, 0.0, 0.2, 1.0]);
    assert!(env.step(1).terminated);
    env.step(1);
}

#[test]
#[should_panic(expected = "action 3 is out of range")]
fn acrobot_refuses_a_fourth_action() {
    let mut env = Acrobot::new();
    env.set_state([0.0; 4]);
    env.step(3);
}

/// The book's Acrobot equations with m = l = 1, l_c = 0.5, I = 1, g = 9.8, written out.
fn acrobot_derivatives(s: [f64; 4], a: f64) -> [f64; 4] {
    let [t1, t2, d1, d2] = s;
    let dd1_coef = 0.25 + (1.0 + 0.25 + t2.cos()) + 2.0; // d1
    let d2_coef = 0.25 + 0.5 * t2.cos() + 1.0; // d2
    let phi2 = 0.5 * 9.8 * (t1 + t2 - std::f64::consts::FRAC_PI_2).cos();
    let phi1 = -0.5 * d2 * d2 * t2.sin() - d2 * d1 * t2.sin()
        + 1.5 * 9.8 * (t1 - std::f64::consts::FRAC_PI_2).cos()
        + phi2;
    let dd2 = (a + d2_coef / dd1_coef * phi1 - 0.5 * d1 * d1 * t2.sin() - phi2)
        / (0.25 + 1.0 - d2_coef * d2_coef / dd1_coef);
    let dd1 = -(d2_coef * dd2 + phi1) / dd1_coef;
    [d1, d2, dd1, dd2]
}

#[test]
fn acrobot_derivatives_at_rest_by_hand() {
    // Hanging at rest: d1 = 4.5, d2 = 1.75, phi = 0, so a unit torque gives
    // dd2 = 1 / (1.25 - 1.75^2 / 4.5) and dd1 = -1.75 dd2 / 4.5.
    let dd2 = 1.0 / (1.25 - 1.75 * 1.75 / 4.5);
    let got = nas_rl::acrobot::derivatives([0.0; 4], 1.0);
    let want = [0.0, 0.0, -1.75 * dd2 / 4.5, dd2];
    assert_state(got, want);
    assert!(close(dd2, 1.756_097_560_975_61, 1e-12));
    // No torque at rest: an equilibrium.
    assert_state(nas_rl::acrobot::derivatives([0.0; 4], 0.0), [0.0; 4]);
}

#[test]
fn acrobot_single_step_is_one_rk4_step_of_the_book_dynamics() {
    let s: [f64; 4] = [0.3, -0.7, 1.1, -2.0];
    for (action, torque) in [(0, -1.0), (1, 0.0), (2, 1.0)] {
        let f = |x: [f64; 4]| acrobot_derivatives(x, torque);
        let add = |x: [f64; 4], k: [f64; 4], h: f64| -> [f64; 4] {
            [
                x[0] + h * k[0],
                x[1] + h * k[1],
                x[2] + h * k[2],
                x[3] + h * k[3],
            ]
        };
        let k1 = f(s);
        let k2 = f(add(s, k1, 0.1));
        let k3 = f(add(s, k2, 0.1));
        let k4 = f(add(s, k3, 0.2));
        let want: [f64; 4] =
            std::array::from_fn(|i| s[i] + 0.2 / 6.0 * (k1[i] + 2.0 * k2[i] + 2.0 * k3[i] + k4[i]));
        assert!(
            want.iter().all(|v| v.abs() < 3.0),
            "no wrapping needed: {want:?}"
        );
        let mut env = Acrobot::new();
        env.set_state(s);
        let step = env.step(action);
        assert_state(env.state(), want);
        let [t1, t2, d1, d2] = want;
        let obs: Vec<f32> = [t1.cos(), t1.sin(), t2.cos(), t2.sin(), d1, d2]
            .iter()
            .map(|&v| v as f32)
            .collect();
        assert_eq!(step.observation, obs);
        assert_eq!((step.reward, step.terminated), (-1.0, false));
    }
}

#[test]
fn acrobot_wraps_angles_clips_velocities_and_terminates_above_the_line() {
    use std::f64::consts::PI;
    // A fast first link crosses pi and comes back as a negative angle; the second link's
    // velocity is clipped to 9 pi.
    let mut env = Acrobot::new();
    env.set_state([PI - 0.05, 0.0, 12.0, 40.0]);
    env.step(1);
    let [t1, t2, d1, d2] = env.state();
    assert!(
        (-PI..=PI).contains(&t1) && (-PI..=PI).contains(&t2),
        "{:?}",
        env.state()
    );
    assert!(d1.abs() <= 4.0 * PI && d2.abs() <= 9.0 * PI);
    assert!(d2 == 9.0 * PI || d2 == -9.0 * PI || d2.abs() < 9.0 * PI);

    // Upright and at rest: the tip is at height 2, above the line at 1.
    assert!(Acrobot::tip_above_line([PI, 0.0, 0.0, 0.0]));
    assert!(!Acrobot::tip_above_line([0.0; 4]));
    // Horizontal first link, second pointing up: tip exactly 1 above the pivot is not > 1.
    assert!(!Acrobot::tip_above_line([PI / 2.0, PI / 2.0, 0.0, 0.0]));
    env.set_state([PI, 0.0, 0.0, 0.0]);
    let s = env.step(1);
    assert!(s.terminated && s.reward == 0.0, "{s:?}");

    env.set_state([0.0; 4]);
    for t in 1..=500 {
        let s = env.step(1);
        assert_eq!(
            (s.reward, s.terminated, s.truncated),
            (-1.0, false, t == 500)
        );
    }
}

#[test]
fn resets_are_deterministic_per_seed_and_in_range() {
    for name in ENV_NAMES {
        let mut a = by_name(name).unwrap();
        let mut b = by_name(name).unwrap();
        let mut ra = ChaCha8Rng::seed_from_u64(7);
        let mut rb = ChaCha8Rng::seed_from_u64(7);
        let first = a.reset(&mut ra);
        assert_eq!(first, b.reset(&mut rb));
        assert_eq!(first.len(), a.observation_size());
        assert_ne!(first, a.reset(&mut ra), "the next reset draws a new state");
        let mut rc = ChaCha8Rng::seed_from_u64(8);
        assert_ne!(first, b.reset(&mut rc), "{name}: other seed, other state");
    }
    let mut r = ChaCha8Rng::seed_from_u64(3);
    let (mut cart, mut acro) = (CartPole::new(), Acrobot::new());
    for _ in 0..200 {
        cart.reset(&mut r);
        assert!(cart.state().iter().all(|v| (-0.05..0.05).contains(v)));
        acro.reset(&mut r);
        assert!(acro.state().iter().all(|v| (-0.1..0.1).contains(v)));
    }
}

#[test]
fn by_name_lists_the_known_names() {
    assert_eq!(by_name("cartpole").unwrap().actions(), 2);
    let acro = by_name("acrobot").unwrap();
    assert_eq!(
        (acro.actions(), acro.observation_size(), acro.max_steps()),
        (3, 6, 500)
    );
    // Gymnasium's reward thresholds of CartPole-v1 and Acrobot-v1.
    assert_eq!(by_name("cartpole").unwrap().reward_threshold(), 475.0);
    assert_eq!(acro.reward_threshold(), -100.0);
    let e = by_name("mountaincar").err().unwrap().to_string();
    assert!(
        e.contains("`mountaincar`") && e.contains("cartpole, acrobot"),
        "{e}"
    );
}

fn random_returns(name: &str, episodes: usize, seed: u64) -> Vec<f64> {
    let mut env = by_name(name).unwrap();
    let actions = env.actions();
    let rng = RefCell::new(ChaCha8Rng::seed_from_u64(seed ^ 0xA5A5));
    run_episodes(
        env.as_mut(),
        |_| rng.borrow_mut().random_range(0..actions),
        episodes,
        seed,
    )
    .unwrap()
}

#[test]
fn random_cartpole_returns_are_short_and_reproducible() {
    let r = random_returns("cartpole", 200, 1);
    let m = mean(&r);
    println!("random cartpole mean over 200 episodes: {m:.2}");
    assert!((15.0..30.0).contains(&m), "mean {m}");
    assert!(
        r.iter()
            .all(|&x| (1.0..=500.0).contains(&x) && x.fract() == 0.0)
    );
    assert_eq!(
        r,
        random_returns("cartpole", 200, 1),
        "same seed, same returns"
    );
    assert_ne!(r, random_returns("cartpole", 200, 2));
}

#[test]
fn pole_following_controller_balances_cartpole() {
    let mut env = CartPole::new();
    let push_toward_fall = |o: &[f32]| usize::from(o[2] + o[3] > 0.0);
    let r = run_episodes(&mut env, push_toward_fall, 100, 11).unwrap();
    let m = mean(&r);
    println!("angle + angular velocity controller, cartpole mean over 100 episodes: {m:.2}");
    assert!(m >= 475.0, "mean {m}");
}

#[test]
fn energy_pumping_beats_random_on_acrobot() {
    let random = mean(&random_returns("acrobot", 50, 5));
    let mut env = Acrobot::new();
    // Torque along the second joint's velocity (observation index 5) feeds energy in.
    let pump = |o: &[f32]| {
        if o[5] > 0.0 {
            2
        } else if o[5] < 0.0 {
            0
        } else {
            1
        }
    };
    let pumped = mean(&run_episodes(&mut env, pump, 50, 5).unwrap());
    println!("acrobot mean over 50 episodes: random {random:.1}, energy pumping {pumped:.1}");
    assert!(random < -400.0, "random {random}");
    assert!(
        pumped > -200.0 && pumped > random + 200.0,
        "pumped {pumped}"
    );
}

#[test]
fn a_policy_with_an_impossible_action_is_an_error() {
    let mut env = CartPole::new();
    let e = run_episodes(&mut env, |_| 2, 1, 0).unwrap_err().to_string();
    assert!(
        e.contains("action 2") && e.contains("episode 0, step 0") && e.contains("0..2"),
        "{e}"
    );
}

/// Trajectories recorded from Gymnasium 1.4.0 (`env.unwrapped.state` set, then these actions),
/// so the equations above are the ones Gymnasium integrates, sign conventions included.
#[test]
fn trajectories_match_gymnasium() {
    let mut cart = CartPole::new();
    cart.set_state([0.1, -0.3, 0.05, 0.4]);
    for a in [1, 1, 0, 1, 0, 0, 1, 1, 1, 0] {
        cart.step(a);
    }
    let want = [
        0.08997163947860487,
        0.08111417099085486,
        0.07060383648281128,
        0.015631280260025415,
    ];
    assert_state_within(cart.state(), want, 1e-10);

    let mut acro = Acrobot::new();
    acro.set_state([0.3, -0.7, 1.1, -2.0]);
    for a in [2, 0, 1, 2, 2, 0, 0, 1, 2, 0, 2, 2, 2, 0, 0, 0, 2, 2, 1, 0] {
        acro.step(a);
    }
    let want = [
        -0.4361075624236047,
        0.5806700369891802,
        0.62245805505362,
        -0.9407637285896394,
    ];
    assert_state_within(acro.state(), want, 1e-9);
}
