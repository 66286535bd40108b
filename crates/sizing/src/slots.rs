//! Fair creation slots across shapes (issue 22). The pool's creation slots
//! (`POOL_CREATE_CONCURRENCY`) and Railway's one `projectCreate` per workspace every 30 s are
//! shared by every shape. Handed out first come first served, the first shape sized would take
//! every free slot for its shortfall and a second shape would wait until the first is full.
//!
//! Instead each free slot goes to the shape with the **fewest creations** (in flight plus
//! given this tick) among those still short; ties go to the larger remaining shortfall, then
//! to the shape listed first. So a shape with a shortfall gets a slot before another holds
//! its second, a big shortfall cannot starve a small one, and slots the small one does not
//! need go to the big one. The order the slots are given in is the order the creations start
//! (Railway's create turns are first come, first served), so the shapes' turns interleave too.

/// One shape's claim on the creation slots.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SlotDemand {
    /// Creations it still wants this tick (its shortfall, after what waking covers).
    pub wanted: u32,
    /// Its creations in flight (already holding a slot).
    pub in_flight: u32,
}

/// The shape the next free slot goes to (its index in `demands`), `None` when no shape wants
/// one. See the module for the order.
pub fn next_creation_slot(demands: &[SlotDemand]) -> Option<usize> {
    demands
        .iter()
        .enumerate()
        .filter(|(_, d)| d.wanted > 0)
        // Fewest in flight first, then the largest shortfall, then the first listed.
        .min_by_key(|(i, d)| (d.in_flight, std::cmp::Reverse(d.wanted), *i))
        .map(|(i, _)| i)
}

/// Shares `free` slots among `demands`: the shape (its index) of each slot, in the order
/// given. Never more slots than `free`, nor more for a shape than it wants.
pub fn share_creation_slots(free: u32, demands: &[SlotDemand]) -> Vec<usize> {
    let mut demands = demands.to_vec();
    let mut order = Vec::new();
    while (order.len() as u32) < free {
        let Some(i) = next_creation_slot(&demands) else {
            break;
        };
        demands[i].wanted -= 1;
        demands[i].in_flight = demands[i].in_flight.saturating_add(1);
        order.push(i);
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demand(wanted: u32, in_flight: u32) -> SlotDemand {
        SlotDemand { wanted, in_flight }
    }

    fn per_shape(order: &[usize], shapes: usize) -> Vec<u32> {
        let mut counts = vec![0; shapes];
        for &i in order {
            counts[i] += 1;
        }
        counts
    }

    #[test]
    fn a_big_shortfall_does_not_starve_a_small_one() {
        // First come first served would give all four slots to the first shape.
        let order = share_creation_slots(4, &[demand(20, 0), demand(2, 0)]);
        assert_eq!(order, vec![0, 1, 0, 1], "interleaved");
        // Once the small one is served, its unused share goes to the big one.
        let order = share_creation_slots(6, &[demand(20, 0), demand(1, 0)]);
        assert_eq!(per_shape(&order, 2), vec![5, 1]);
        assert_eq!(
            order[..2],
            [0, 1],
            "the small one's first before the big one's second"
        );
    }

    #[test]
    fn a_shape_with_a_shortfall_gets_a_slot_before_another_holds_its_second() {
        // The first shape already holds three slots: the next ones go to the others first.
        let order = share_creation_slots(3, &[demand(10, 3), demand(4, 0), demand(1, 0)]);
        assert_eq!(order, vec![1, 2, 1], "the larger shortfall first among equals");
        let order = share_creation_slots(8, &[demand(10, 3), demand(4, 0), demand(1, 0)]);
        assert_eq!(per_shape(&order, 3), vec![3, 4, 1]);
    }

    #[test]
    fn never_more_than_the_free_slots_nor_than_a_shape_wants() {
        assert!(share_creation_slots(0, &[demand(5, 0)]).is_empty());
        assert!(share_creation_slots(5, &[demand(0, 0), demand(0, 2)]).is_empty());
        assert!(share_creation_slots(5, &[]).is_empty());
        let order = share_creation_slots(10, &[demand(2, 0), demand(3, 1)]);
        assert_eq!(per_shape(&order, 2), vec![2, 3], "5 wanted in all");
        assert_eq!(next_creation_slot(&[demand(0, 0), demand(1, 9)]), Some(1));
        assert_eq!(next_creation_slot(&[demand(0, 0)]), None);
    }

    #[test]
    fn equal_shapes_alternate_from_the_first_listed() {
        let order = share_creation_slots(5, &[demand(3, 0), demand(3, 0)]);
        assert_eq!(order, vec![0, 1, 0, 1, 0]);
    }
}
