//! What the EPANET parser drops: the comments of an `.inp` that mark the published sensors.
//!
//! BattLeDIM's L-Town (and the built-in network) mark instrumented elements with a comment on
//! their line: `;PRESSURE SENSOR`, `;FLOW SENSOR`, `;LEVEL SENSOR`, and `;AMR` for a junction
//! whose customers have a smart meter (also combined, as in `;AMR & PRESSURE SENSOR`). This module reads those marks; the rest of the file is
//! the solver's business.

/// The sensors an `.inp` marks, by element id, in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SensorTags {
    /// Nodes marked `PRESSURE SENSOR`.
    pub pressure: Vec<String>,
    /// Links marked `FLOW SENSOR`.
    pub flow: Vec<String>,
    /// Tanks marked `LEVEL SENSOR`.
    pub level: Vec<String>,
    /// Junctions marked `AMR` (customer smart meters).
    pub amr: Vec<String>,
}

/// Reads the sensor marks of an `.inp` text.
pub fn sensor_tags(text: &str) -> SensorTags {
    let mut tags = SensorTags::default();
    let mut section = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            section = trimmed.to_ascii_uppercase();
            continue;
        }
        let Some((data, comment)) = trimmed.split_once(';') else {
            continue;
        };
        let Some(id) = data.split_whitespace().next() else {
            continue;
        };
        let comment = comment.to_ascii_uppercase();
        let is_node = matches!(section.as_str(), "[JUNCTIONS]" | "[TANKS]" | "[RESERVOIRS]");
        let is_link = matches!(section.as_str(), "[PIPES]" | "[PUMPS]" | "[VALVES]");
        if is_node && comment.contains("PRESSURE SENSOR") {
            tags.pressure.push(id.to_owned());
        }
        if is_link && comment.contains("FLOW SENSOR") {
            tags.flow.push(id.to_owned());
        }
        if section == "[TANKS]" && comment.contains("LEVEL SENSOR") {
            tags.level.push(id.to_owned());
        }
        let amr = comment
            .split(|c: char| !c.is_ascii_alphanumeric())
            .any(|w| w == "AMR");
        if section == "[JUNCTIONS]" && amr {
            tags.amr.push(id.to_owned());
        }
    }
    tags
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_marks_by_section_and_ignores_whole_line_comments() {
        let text = "[JUNCTIONS]\n;ID Elev ;PRESSURE SENSOR\n n1 73 0 P ;AMR & PRESSURE SENSOR\n n2 70 0 P ;AMR\n\
                    [TANKS]\n T1 98 3 0 4 16 0 ;LEVEL SENSOR\n[PIPES]\n p1 n1 n2 10 100 140 0 Open ;FLOW SENSOR\n\
                    [PUMPS]\n PUMP_1 n2 T1 HEAD 1 ;FLOW SENSOR\n";
        let tags = sensor_tags(text);
        assert_eq!(tags.pressure, vec!["n1"]);
        assert_eq!(tags.flow, vec!["p1", "PUMP_1"]);
        assert_eq!(tags.level, vec!["T1"]);
        assert_eq!(tags.amr, vec!["n1", "n2"]);
    }
}
