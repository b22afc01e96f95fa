//! Read planning: [`plan_reads`] coalesces a map's points into [`ReadRequest`]s.

use super::map::RegisterMap;
use super::types::{Table, register_count};

/// One read: `count` registers (or bits) of `table` from `start`, covering some points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadRequest {
    pub table: Table,
    pub start: u16,
    pub count: u16,
    /// Indices into [`RegisterMap::points`], by address.
    pub points: Vec<usize>,
}

/// Coalesces the map's points into as few reads as the limits allow.
///
/// Points are grouped by table (requests come out in [`Table`] order, then by address); a
/// point joins the current request when the unused addresses before it number at most
/// [`RegisterMap::max_gap`] and the request then still covers at most
/// [`RegisterMap::read_limit`] addresses. A point is never split across requests (a point
/// wider than the limit, which [`RegisterMap::validate`] refuses, gets a request of its own).
/// The map need not be valid: overlapping points are merged, nothing panics.
pub fn plan_reads(map: &RegisterMap) -> Vec<ReadRequest> {
    struct Open {
        table: Table,
        start: u32,
        end: u32,
        points: Vec<usize>,
    }
    fn close(o: Open) -> ReadRequest {
        ReadRequest {
            table: o.table,
            start: u16::try_from(o.start).unwrap_or(u16::MAX),
            count: u16::try_from(o.end - o.start).unwrap_or(u16::MAX),
            points: o.points,
        }
    }

    let mut order: Vec<usize> = (0..map.points.len()).collect();
    order.sort_by_key(|&i| (map.points[i].table, map.points[i].address, i));
    let gap = u32::from(map.max_gap);
    let mut out = Vec::new();
    let mut open: Option<Open> = None;
    for i in order {
        let p = &map.points[i];
        let start = u32::from(p.address);
        let end = start + u32::from(register_count(p.value_type));
        let limit = u32::from(map.read_limit(p.table).max(1));
        if let Some(o) = open.as_mut()
            && o.table == p.table
            && start <= o.end + gap
            && end.max(o.end) - o.start <= limit
        {
            o.end = o.end.max(end);
            o.points.push(i);
            continue;
        }
        if let Some(o) = open.replace(Open {
            table: p.table,
            start,
            end,
            points: vec![i],
        }) {
            out.push(close(o));
        }
    }
    out.extend(open.map(close));
    out
}

#[cfg(test)]
mod tests {
    use super::super::ValueType;
    use super::super::tests::{map, point, reg, spans};
    use super::*;

    #[test]
    fn adjacent_points_become_one_request() {
        let m = map(vec![
            reg(4, ValueType::U16),
            reg(0, ValueType::F32),
            reg(2, ValueType::I32),
        ]);
        let reqs = plan_reads(&m);
        assert_eq!(spans(&reqs), [(Table::Holding, 0, 5)]);
        assert_eq!(reqs[0].points, [1, 2, 0], "by address");
    }

    #[test]
    fn gap_up_to_max_gap_is_bridged_larger_splits() {
        // 0..2, then gap of exactly 8 (2..10), then 10.
        let m = map(vec![reg(0, ValueType::F32), reg(10, ValueType::U16)]);
        assert_eq!(spans(&plan_reads(&m)), [(Table::Holding, 0, 11)]);
        let m = map(vec![reg(0, ValueType::F32), reg(11, ValueType::U16)]);
        assert_eq!(
            spans(&plan_reads(&m)),
            [(Table::Holding, 0, 2), (Table::Holding, 11, 1)]
        );
        let mut m = map(vec![reg(0, ValueType::U16), reg(1, ValueType::U16)]);
        m.max_gap = 0;
        assert_eq!(spans(&plan_reads(&m)), [(Table::Holding, 0, 2)]);
        m.points[1].address = 2;
        assert_eq!(plan_reads(&m).len(), 2);
    }

    #[test]
    fn per_read_limit_splits() {
        let mut m = map((0..10).map(|a| reg(a, ValueType::U16)).collect());
        m.max_registers_per_read = 4;
        assert_eq!(
            spans(&plan_reads(&m)),
            [
                (Table::Holding, 0, 4),
                (Table::Holding, 4, 4),
                (Table::Holding, 8, 2)
            ]
        );
    }

    #[test]
    fn limit_of_125_with_a_two_register_point_at_the_boundary() {
        // 123 u16 then an f32 at 123..125: exactly 125 registers, one read.
        let mut points: Vec<_> = (0..123).map(|a| reg(a, ValueType::U16)).collect();
        points.push(reg(123, ValueType::F32));
        let m = map(points);
        m.validate().unwrap();
        assert_eq!(spans(&plan_reads(&m)), [(Table::Holding, 0, 125)]);

        // 124 u16 then an f32 at 124..126: the f32 would straddle; it moves whole.
        let mut points: Vec<_> = (0..124).map(|a| reg(a, ValueType::U16)).collect();
        points.push(reg(124, ValueType::F32));
        let m = map(points);
        let reqs = plan_reads(&m);
        assert_eq!(
            spans(&reqs),
            [(Table::Holding, 0, 124), (Table::Holding, 124, 2)]
        );
        assert_eq!(reqs[1].points, [124]);
    }

    #[test]
    fn tables_never_merge() {
        let m = map(vec![
            point("c0", Table::Coil, 0, ValueType::Bool),
            point("i0", Table::Input, 0, ValueType::U16),
            point("h1", Table::Holding, 1, ValueType::U16),
            point("d0", Table::DiscreteInput, 0, ValueType::Bool),
            point("h0", Table::Holding, 0, ValueType::U16),
            point("c1", Table::Coil, 1, ValueType::Bool),
        ]);
        let reqs = plan_reads(&m);
        assert_eq!(
            spans(&reqs),
            [
                (Table::Holding, 0, 2),
                (Table::Input, 0, 1),
                (Table::Coil, 0, 2),
                (Table::DiscreteInput, 0, 1)
            ]
        );
        assert_eq!(reqs[0].points, [4, 2]);
        assert_eq!(reqs[2].points, [0, 5]);
    }

    #[test]
    fn bit_tables_use_the_bit_limit() {
        let mut m = map((0..3000)
            .step_by(5)
            .map(|a| point(&format!("c{a}"), Table::Coil, a, ValueType::Bool))
            .collect());
        let reqs = plan_reads(&m);
        assert_eq!(
            spans(&reqs),
            [(Table::Coil, 0, 1996), (Table::Coil, 2000, 996)]
        );
        m.max_bits_per_read = 10;
        assert_eq!(plan_reads(&m)[0].count, 6);
    }
}
