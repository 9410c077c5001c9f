//! Start order (`after = [...]`): which services may start now, given what
//! the services they start after have done. Pure.
//!
//! A service starts once each service it names has *started*: a `simple`
//! one once its process was spawned, a `oneshot` once it exited with
//! status 0. A named service that failed for good (a oneshot that failed
//! and is not restarted, a program that could not start) blocks it for
//! the rest of the boot, and so everything after it.
//!
//! The file's names are checked once, when the services are read: a name
//! that is no service is a warning and ignored; a disabled service is
//! ignored without one (it was turned off on purpose, and waiting for it
//! would wait forever); services that start after each other in a cycle are
//! a warning, and their order among themselves is ignored, so that each
//! still starts. What is left is acyclic, and [`Order::topo`] lists the
//! services so that each comes after the ones it starts after.

use std::collections::BTreeSet;

/// A service as the order sees it.
#[derive(Clone, Copy, Debug)]
pub struct Node<'a> {
    /// Its name.
    pub name: &'a str,
    /// Whether it is enabled (a disabled one never starts, so it is neither
    /// waited for nor waits).
    pub enabled: bool,
    /// The names it starts after.
    pub after: &'a [String],
}

/// A problem with `after`, reported once when the services are read; the
/// service still starts.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OrderWarning {
    /// A name that is no service.
    #[error("service {service}: after names {name:?}, which is not a service; ignored")]
    Unknown {
        /// The service whose file has the name.
        service: String,
        /// The unknown name.
        name: String,
    },
    /// Services that start after each other.
    #[error("{}", cycle_message(.services))]
    Cycle {
        /// The services of the cycle (one alone: it names itself).
        services: Vec<String>,
    },
}

fn cycle_message(services: &[String]) -> String {
    match services {
        [one] => format!("service {one}: after names itself; ignored"),
        _ => format!(
            "services {} start after each other (a cycle of `after`); their order among themselves is ignored",
            services.join(", ")
        ),
    }
}

/// What a service is for the services that start after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Not started yet, and it still may.
    Pending,
    /// Started (a oneshot: succeeded).
    Started,
    /// Will not start in this boot.
    Failed,
}

/// Whether a service may start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Gate {
    /// Every service it starts after has started.
    Open,
    /// These (indices) have not started yet.
    Waiting(Vec<usize>),
    /// These failed: it does not start in this boot.
    Blocked(Vec<usize>),
}

/// The checked order of a set of services (indices into the slice given to
/// [`Order::new`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Order {
    after: Vec<Vec<usize>>,
    topo: Vec<usize>,
}

impl Order {
    /// Resolves names to services, drops unknown and disabled names and the
    /// edges of cycles, and says what it dropped (disabled names silently).
    pub fn new(nodes: &[Node]) -> (Order, Vec<OrderWarning>) {
        let mut warnings = Vec::new();
        let mut after: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
        for (i, node) in nodes.iter().enumerate() {
            if !node.enabled {
                continue;
            }
            for name in node.after {
                match nodes.iter().position(|n| n.name == name) {
                    None => warnings.push(OrderWarning::Unknown {
                        service: node.name.to_string(),
                        name: name.clone(),
                    }),
                    Some(j) if !nodes[j].enabled => {}
                    Some(j) => {
                        if !after[i].contains(&j) {
                            after[i].push(j);
                        }
                    }
                }
            }
        }
        for scc in strongly_connected(&after) {
            let cyclic = scc.len() > 1 || after[scc[0]].contains(&scc[0]);
            if !cyclic {
                continue;
            }
            for &i in &scc {
                after[i].retain(|j| !scc.contains(j));
            }
            warnings.push(OrderWarning::Cycle {
                services: scc.iter().map(|&i| nodes[i].name.to_string()).collect(),
            });
        }
        let topo = topological(&after);
        (Order { after, topo }, warnings)
    }

    /// The services `i` starts after (checked: known, enabled, no cycle).
    pub fn after(&self, i: usize) -> &[usize] {
        self.after.get(i).map_or(&[], Vec::as_slice)
    }

    /// Every service, each after those it starts after (ties by index).
    pub fn topo(&self) -> &[usize] {
        &self.topo
    }

    /// Whether `i` may start, given each service's progress.
    pub fn gate(&self, i: usize, progress: impl Fn(usize) -> Progress) -> Gate {
        let deps = self.after(i);
        let failed: Vec<usize> = deps
            .iter()
            .copied()
            .filter(|&j| progress(j) == Progress::Failed)
            .collect();
        if !failed.is_empty() {
            return Gate::Blocked(failed);
        }
        let pending: Vec<usize> = deps
            .iter()
            .copied()
            .filter(|&j| progress(j) == Progress::Pending)
            .collect();
        if pending.is_empty() {
            Gate::Open
        } else {
            Gate::Waiting(pending)
        }
    }
}

/// Tarjan's strongly connected components of the graph `edges` (i → each
/// of `edges[i]`), each sorted, ordered by their smallest member.
fn strongly_connected(edges: &[Vec<usize>]) -> Vec<Vec<usize>> {
    struct Walk<'a> {
        edges: &'a [Vec<usize>],
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        on_stack: Vec<bool>,
        stack: Vec<usize>,
        next: usize,
        found: Vec<Vec<usize>>,
    }
    impl Walk<'_> {
        fn visit(&mut self, v: usize) {
            self.index[v] = Some(self.next);
            self.low[v] = self.next;
            self.next += 1;
            self.stack.push(v);
            self.on_stack[v] = true;
            for &w in &self.edges[v] {
                match self.index[w] {
                    None => {
                        self.visit(w);
                        self.low[v] = self.low[v].min(self.low[w]);
                    }
                    Some(iw) if self.on_stack[w] => self.low[v] = self.low[v].min(iw),
                    Some(_) => {}
                }
            }
            if Some(self.low[v]) == self.index[v] {
                let mut scc = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack[w] = false;
                    scc.push(w);
                    if w == v {
                        break;
                    }
                }
                scc.sort_unstable();
                self.found.push(scc);
            }
        }
    }
    let n = edges.len();
    let mut walk = Walk {
        edges,
        index: vec![None; n],
        low: vec![0; n],
        on_stack: vec![false; n],
        stack: Vec::new(),
        next: 0,
        found: Vec::new(),
    };
    for v in 0..n {
        if walk.index[v].is_none() {
            walk.visit(v);
        }
    }
    walk.found.sort_by_key(|scc| scc[0]);
    walk.found
}

/// Kahn's order of an acyclic graph where `after[i]` must come before `i`;
/// among the services free to go, the smallest index first.
fn topological(after: &[Vec<usize>]) -> Vec<usize> {
    let n = after.len();
    let mut waiting: Vec<usize> = after.iter().map(Vec::len).collect();
    let mut free: BTreeSet<usize> = (0..n).filter(|&i| waiting[i] == 0).collect();
    let mut out = Vec::with_capacity(n);
    while let Some(i) = free.pop_first() {
        out.push(i);
        for (j, deps) in after.iter().enumerate() {
            if deps.contains(&i) {
                waiting[j] -= 1;
                if waiting[j] == 0 {
                    free.insert(j);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("s{i}")).collect()
    }

    /// An order over services `s0..sN` where `edges` lists (i, j): i starts
    /// after j.
    fn order(n: usize, edges: &[(usize, usize)]) -> (Order, Vec<OrderWarning>) {
        let names = names(n);
        let after: Vec<Vec<String>> = (0..n)
            .map(|i| {
                edges
                    .iter()
                    .filter(|e| e.0 == i)
                    .map(|e| names[e.1].clone())
                    .collect()
            })
            .collect();
        let nodes: Vec<Node> = (0..n)
            .map(|i| Node {
                name: &names[i],
                enabled: true,
                after: &after[i],
            })
            .collect();
        Order::new(&nodes)
    }

    #[test]
    fn unknown_and_disabled_names_are_dropped() {
        let after_sshd = vec!["keygen".to_string(), "nosuch".to_string()];
        let after_off = vec!["ghost".to_string()];
        let after_web = vec!["off".to_string(), "sshd".to_string(), "sshd".to_string()];
        let nodes = [
            Node {
                name: "keygen",
                enabled: true,
                after: &[],
            },
            Node {
                name: "off",
                enabled: false,
                after: &after_off,
            },
            Node {
                name: "sshd",
                enabled: true,
                after: &after_sshd,
            },
            Node {
                name: "web",
                enabled: true,
                after: &after_web,
            },
        ];
        let (order, warnings) = Order::new(&nodes);
        assert_eq!(
            warnings,
            [OrderWarning::Unknown {
                service: "sshd".into(),
                name: "nosuch".into()
            }],
            "a disabled service's own names are not checked; naming one is no warning"
        );
        assert_eq!(
            warnings[0].to_string(),
            "service sshd: after names \"nosuch\", which is not a service; ignored"
        );
        assert_eq!(order.after(2), [0]);
        assert_eq!(order.after(3), [2], "the disabled one and the duplicate go");
        assert_eq!(order.after(1), [] as [usize; 0]);
        assert_eq!(order.after(9), [] as [usize; 0], "out of range: nothing");
        assert_eq!(order.topo(), [0, 1, 2, 3]);
    }

    #[test]
    fn cycles_are_reported_once_and_their_edges_dropped() {
        // s0 ↔ s1; s2 names itself; s3 → s4 → s5 → s3; s6 after s0 and s3
        // keeps both (it is in no cycle).
        let (order, warnings) = order(
            7,
            &[
                (0, 1),
                (1, 0),
                (2, 2),
                (3, 4),
                (4, 5),
                (5, 3),
                (6, 0),
                (6, 3),
            ],
        );
        let cycles: Vec<String> = warnings.iter().map(ToString::to_string).collect();
        assert_eq!(
            cycles,
            [
                "services s0, s1 start after each other (a cycle of `after`); their order among themselves is ignored",
                "service s2: after names itself; ignored",
                "services s3, s4, s5 start after each other (a cycle of `after`); their order among themselves is ignored",
            ]
        );
        for i in 0..6 {
            assert!(order.after(i).is_empty(), "s{i}");
        }
        assert_eq!(order.after(6), [0, 3]);
        assert_eq!(order.topo(), [0, 1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn topo_puts_each_service_after_those_it_starts_after() {
        // A diamond and a chain written against the name order.
        let (order, warnings) = order(5, &[(0, 1), (0, 2), (1, 3), (2, 3), (3, 4)]);
        assert!(warnings.is_empty());
        assert_eq!(order.topo(), [4, 3, 1, 2, 0]);
    }

    /// `reach[i][j]`: j can be reached from i in one or more steps.
    fn reachability(n: usize, edges: &[(usize, usize)]) -> Vec<Vec<bool>> {
        let mut reach = vec![vec![false; n]; n];
        for &(i, j) in edges {
            reach[i][j] = true;
        }
        for k in 0..n {
            for i in 0..n {
                for j in 0..n {
                    if reach[i][k] && reach[k][j] {
                        reach[i][j] = true;
                    }
                }
            }
        }
        reach
    }

    /// Every graph on `n` services (self edges included if `selfs`): an edge
    /// is dropped exactly when it lies on a cycle, one warning per cycle
    /// class, the topological order is a permutation that honours every
    /// kept edge.
    fn all_graphs(n: usize, selfs: bool) {
        let possible: Vec<(usize, usize)> = (0..n)
            .flat_map(|i| (0..n).map(move |j| (i, j)))
            .filter(|&(i, j)| selfs || i != j)
            .collect();
        for mask in 0u32..(1 << possible.len()) {
            let edges: Vec<(usize, usize)> = possible
                .iter()
                .enumerate()
                .filter(|(b, _)| mask & (1 << b) != 0)
                .map(|(_, &e)| e)
                .collect();
            let (order, warnings) = order(n, &edges);
            let reach = reachability(n, &edges);
            for &(i, j) in &edges {
                let on_cycle = reach[j][i];
                assert_eq!(
                    !order.after(i).contains(&j),
                    on_cycle,
                    "{edges:?}: edge {i}→{j}"
                );
            }
            for i in 0..n {
                for &j in order.after(i) {
                    assert!(edges.contains(&(i, j)), "{edges:?}: invented {i}→{j}");
                }
            }
            // Cycle classes: services that reach themselves, grouped by
            // mutual reachability.
            let mut classes: Vec<Vec<usize>> = Vec::new();
            for i in (0..n).filter(|&i| reach[i][i]) {
                match classes
                    .iter_mut()
                    .find(|c| reach[c[0]][i] && reach[i][c[0]])
                {
                    Some(c) => c.push(i),
                    None => classes.push(vec![i]),
                }
            }
            let expected: Vec<OrderWarning> = classes
                .iter()
                .map(|c| OrderWarning::Cycle {
                    services: c.iter().map(|i| format!("s{i}")).collect(),
                })
                .collect();
            assert_eq!(warnings, expected, "{edges:?}");
            let topo = order.topo();
            let mut sorted = topo.to_vec();
            sorted.sort_unstable();
            assert_eq!(sorted, (0..n).collect::<Vec<_>>(), "{edges:?}");
            let position = |x: usize| topo.iter().position(|&t| t == x);
            for i in 0..n {
                for &j in order.after(i) {
                    assert!(position(j) < position(i), "{edges:?}: {topo:?}");
                }
            }
        }
    }

    #[test]
    fn every_graph_of_three_services_with_self_edges() {
        all_graphs(3, true);
    }

    #[test]
    fn every_graph_of_four_services() {
        all_graphs(4, false);
    }

    #[test]
    fn the_gate_for_every_progress_of_three_dependencies() {
        use Progress::*;
        let (order, _) = order(4, &[(3, 0), (3, 1), (3, 2)]);
        let all = [Pending, Started, Failed];
        for a in all {
            for b in all {
                for c in all {
                    let progress = [a, b, c, Started];
                    let with = |p: Progress| -> Vec<usize> {
                        (0..3).filter(|&i| progress[i] == p).collect()
                    };
                    let expected = if !with(Failed).is_empty() {
                        Gate::Blocked(with(Failed))
                    } else if !with(Pending).is_empty() {
                        Gate::Waiting(with(Pending))
                    } else {
                        Gate::Open
                    };
                    assert_eq!(order.gate(3, |i| progress[i]), expected, "{progress:?}");
                }
            }
        }
        // A service that starts after nothing may always start.
        for p in all {
            assert_eq!(order.gate(0, |_| p), Gate::Open);
        }
    }
}
