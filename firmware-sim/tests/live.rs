//! The live twin's PRV controllers on the wire: registers as the shipped `dma-inlet-rtu` map
//! lays them out, only the set point writable, and a written set point changing the valve.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_modbus::client::{Reader, Writer, tcp};
use tokio_modbus::{ExceptionCode, Slave};
use waterline_sim::twin::engine::Engine;
use waterline_sim::twin::live::{LiveConfig, LiveTwin};
use waterline_sim::twin::{BUILTIN_INP, Twin, TwinConfig};

fn twin(steps: usize) -> Twin {
    let engine = Engine::from_inp_text(BUILTIN_INP, "built-in").unwrap();
    let start: DateTime<Utc> = "2026-01-05T00:00:00Z".parse().unwrap();
    Twin::new(
        engine,
        TwinConfig {
            start,
            steps,
            step_s: 900,
            timezone: chrono_tz::Tz::UTC,
            seed: 3,
            demand_variation: false,
            leaks: Vec::new(),
            random_leaks: 0,
            setpoints: Vec::new(),
        },
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prv_controller_serves_the_valve_and_takes_a_new_set_point() {
    let mut live = LiveTwin::start(
        // Three weeks at 20 ms a step (40 s): the test stops it long before, however slow
        // the machine.
        twin(2016),
        LiveConfig {
            speed: Some(900.0 / 0.02),
            listen: [127, 0, 0, 1].into(),
        },
    )
    .await
    .unwrap();
    let c = live.controllers()[0].clone();
    assert_eq!((c.prv.as_str(), c.device.as_str()), ("PRV-B", "RTU-PRV-B"));
    live.wait_for_steps(4, Duration::from_secs(10)).await;
    let mut ctx = tcp::connect_slave(c.addr, Slave(1)).await.unwrap();

    // The .inp holds PRV-B at 30 m: set point and outlet pressure in tenths of a metre.
    let regs = ctx.read_holding_registers(0, 11).await.unwrap().unwrap();
    assert_eq!(regs[10], 300, "{regs:?}");
    assert!((295..=305).contains(&regs[5]), "outlet {regs:?}");
    // Inlet pressure in hundredths of a bar is above the outlet's.
    assert!(f64::from(regs[4]) / 100.0 * 10.197 > 30.0, "{regs:?}");
    // Flow, f32 word-swapped (CDAB), L/s: positive.
    let flow = f32::from_bits((u32::from(regs[1]) << 16) | u32::from(regs[0]));
    assert!(flow > 0.5 && flow < 100.0, "flow {flow} L/s");

    // Past the map, and writes other than the set point: exceptions.
    assert_eq!(
        ctx.read_holding_registers(0, 12).await.unwrap(),
        Err(ExceptionCode::IllegalDataAddress)
    );
    assert_eq!(
        ctx.write_single_register(5, 100).await.unwrap(),
        Err(ExceptionCode::IllegalDataAddress)
    );
    assert!(live.state().applied.is_empty());

    // 5.0 m is below the controller's 10–60 m range: refused, the register reverts.
    ctx.write_single_register(10, 50).await.unwrap().unwrap();
    let before = live.state().steps_done;
    live.wait_for_steps(before + 2, Duration::from_secs(10))
        .await;
    assert!(live.state().applied.is_empty());
    assert_eq!(
        ctx.read_holding_registers(10, 1).await.unwrap().unwrap(),
        [300]
    );

    // 24.0 m written: applied from the next step, and the outlet follows.
    ctx.write_single_register(10, 240).await.unwrap().unwrap();
    let before = live.state().steps_done;
    let s = live
        .wait_for_steps(before + 3, Duration::from_secs(10))
        .await;
    assert_eq!(s.applied.len(), 1, "{:?}", s.applied);
    assert_eq!(s.applied[0].prv, "PRV-B");
    assert!((s.applied[0].setting_m - 24.0).abs() < 1e-9);
    assert!(s.applied[0].step >= before);
    assert_eq!(s.settings_m, [24.0]);
    let outlet = ctx.read_holding_registers(5, 1).await.unwrap().unwrap()[0];
    assert!((235..=245).contains(&outlet), "outlet now {outlet}");
    live.stop();
    assert!(live.state().finished);
    assert!(live.state().error.is_none());
}

#[tokio::test]
async fn a_bad_speed_is_refused() {
    let err = LiveTwin::start(
        twin(4),
        LiveConfig {
            speed: Some(0.0),
            listen: [127, 0, 0, 1].into(),
        },
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("speed 0"), "{err}");
}
