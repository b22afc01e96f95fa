//! Waterline's domain model. No IO, no async runtime, no database, no dataframes.
//!
//! - [`ids`]: typed identifiers ([`SensorId`], [`DmaId`], [`DeviceId`], [`StationId`]).
//! - [`units`]: [`SensorKind`], [`Unit`] and conversion to canonical units.
//! - [`reading`]: [`Reading`], a value in canonical units at an instant.
//! - [`network`]: the `network.toml` description ([`Network`]) with line-precise errors.
//! - [`codec`]: wire payloads (the native JSON uplink) as pure functions.
//! - [`event`]: the analytics event model of CONTRACTS §4.
//! - [`alert`]: the alert workflow's vocabulary ([`Resolution`], [`GrabSample`], [`Note`]).
//! - [`window`]: declared windows ([`DeclaredWindow`]): compliance exclusions and maintenance.
//! - [`schedule`]: a PRV's hourly set-point schedule ([`HourlySchedule`]) on the local clock.
//! - [`auth`]: user roles.
//! - [`health`]: a shared board of component states for `/health`.
//! - [`modbus`]: Modbus register maps ([`modbus::RegisterMap`]), read planning and word decoding.

pub mod alert;
pub mod auth;
pub mod codec;
pub mod event;
pub mod health;
pub mod ids;
pub mod modbus;
pub mod network;
pub mod reading;
pub mod schedule;
#[doc(hidden)]
pub mod testing;
pub mod units;
pub mod window;

pub use alert::{GrabSample, Note, Resolution};
pub use auth::Role;
pub use event::{Event, EventKind, EventState, Severity};
pub use ids::{DeviceId, DmaId, IdError, PrvId, SensorId, StationId};
pub use network::{Dma, Network, NetworkError, NightWindow, Prv, Sensor, SignalRole};
pub use reading::Reading;
pub use schedule::HourlySchedule;
pub use units::{Quantity, SensorKind, Unit, UnitMismatch};
pub use window::{DeclaredWindow, WindowKind, WindowSubject};
