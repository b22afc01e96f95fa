//! Waterline device and sensor ids of Sparkplug edge nodes, devices and metrics (see the
//! mapping in the module docs of [`super`]).

use crate::ids::{DeviceId, IdError, SensorId};

/// Replaces what Waterline ids do not allow with `_`; in metric names first maps the folder
/// separator `/` to `.` and a space to `_`. `:` is always replaced: it is our separator.
fn sanitise(part: &str, metric_name: bool) -> String {
    part.chars()
        .map(|c| match c {
            '/' if metric_name => '.',
            c if c.is_alphanumeric() || matches!(c, '_' | '-' | '.') => c,
            _ => '_',
        })
        .collect()
}

/// The Waterline device id of an edge node (`<group>:<edge node>`) or of one of its devices
/// (`<group>:<edge node>:<device>`), each element sanitised (see the module docs).
pub fn device_id(group: &str, edge_node: &str, device: Option<&str>) -> Result<DeviceId, IdError> {
    let mut id = format!("{}:{}", sanitise(group, false), sanitise(edge_node, false));
    if let Some(d) = device {
        id.push(':');
        id.push_str(&sanitise(d, false));
    }
    DeviceId::parse(id)
}

/// The Waterline sensor id of a metric: `<device id>:<metric name>` with `/` → `.`, space →
/// `_` and other disallowed characters → `_` in the name.
pub fn sensor_id(device: &DeviceId, metric_name: &str) -> Result<SensorId, IdError> {
    SensorId::parse(format!("{device}:{}", sanitise(metric_name, true)))
}

#[cfg(test)]
mod tests {
    use super::super::tests::topic;
    use super::*;

    #[test]
    fn ids_are_sanitised() {
        let d = device_id("Plant A", "RTU:1", None).unwrap();
        assert_eq!(d.as_str(), "Plant_A:RTU_1");
        let d = device_id("水厂", "e-1", Some("PRV 7/x")).unwrap();
        assert_eq!(d.as_str(), "水厂:e-1:PRV_7_x");
        let s = sensor_id(&d, "Inlet/Flow Rate (m3/h)").unwrap();
        assert_eq!(s.as_str(), "水厂:e-1:PRV_7_x:Inlet.Flow_Rate__m3.h_");
        assert_eq!(
            sensor_id(&d, "a:b").unwrap().as_str(),
            "水厂:e-1:PRV_7_x:a_b"
        );
        assert!(matches!(
            sensor_id(&d, &"x".repeat(200)),
            Err(IdError::TooLong { .. })
        ));
        assert_eq!(
            topic("spBv1.0/G/DDATA/E/D").device_id().unwrap().as_str(),
            "G:E:D"
        );
    }
}
