//! Which database server a new tenant goes to (docs/OPERATIONS.md, "Database servers").
//!
//! The policy: among the `active` servers that are not full, the one with the fewest
//! tenants relative to its weight; ties go to the larger weight, then to the name. Over
//! many placements each server's share of the tenants follows its share of the weights
//! (within one tenant), and a server added later takes every new tenant until it has
//! caught up. `draining` and `disabled` servers get none.

use uuid::Uuid;

/// A server's state, as `database_servers.state` stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerState {
    /// Receives new tenants.
    Active,
    /// Keeps its tenants; gets no new ones (to be emptied by moving them).
    Draining,
    /// Holds no tenant and gets none.
    Disabled,
}

impl ServerState {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Draining => "draining",
            Self::Disabled => "disabled",
        }
    }
}

impl std::str::FromStr for ServerState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "active" => Ok(Self::Active),
            "draining" => Ok(Self::Draining),
            "disabled" => Ok(Self::Disabled),
            other => Err(format!("unknown server state {other:?}")),
        }
    }
}

/// A server as placement sees it.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub id: Uuid,
    pub name: String,
    pub state: ServerState,
    /// 1–10000.
    pub weight: u32,
    pub max_tenants: Option<u64>,
    /// Tenants it holds now (every state, deactivated included, until purged).
    pub tenants: u64,
}

impl Candidate {
    fn full(&self) -> bool {
        self.max_tenants.is_some_and(|max| self.tenants >= max)
    }
}

/// No server can take a new tenant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no database server can take a new tenant ({active} active, {full} of them full)")]
pub struct NoCapacity {
    pub active: usize,
    pub full: usize,
}

/// The server the next tenant goes to.
pub fn choose(servers: &[Candidate]) -> Result<&Candidate, NoCapacity> {
    let active: Vec<&Candidate> = servers
        .iter()
        .filter(|s| s.state == ServerState::Active)
        .collect();
    active
        .iter()
        .copied()
        .filter(|s| !s.full())
        .min_by(|a, b| {
            // a.tenants / a.weight against b.tenants / b.weight, without division.
            let load_a = u128::from(a.tenants) * u128::from(b.weight.max(1));
            let load_b = u128::from(b.tenants) * u128::from(a.weight.max(1));
            load_a
                .cmp(&load_b)
                .then(b.weight.cmp(&a.weight))
                .then(a.name.cmp(&b.name))
        })
        .ok_or(NoCapacity {
            active: active.len(),
            full: active.iter().filter(|s| s.full()).count(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(name: &str, weight: u32, tenants: u64) -> Candidate {
        Candidate {
            id: Uuid::new_v4(),
            name: name.to_owned(),
            state: ServerState::Active,
            weight,
            max_tenants: None,
            tenants,
        }
    }

    /// Places `n` tenants one after the other; the count each server ends with.
    fn place(servers: &mut [Candidate], n: usize) -> Vec<u64> {
        for _ in 0..n {
            let id = choose(servers).expect("a server").id;
            let chosen = servers.iter_mut().find(|s| s.id == id).expect("listed");
            chosen.tenants += 1;
        }
        servers.iter().map(|s| s.tenants).collect()
    }

    #[test]
    fn tenants_spread_in_proportion_to_the_weights() {
        let mut servers = [
            server("a", 100, 0),
            server("b", 200, 0),
            server("c", 300, 0),
        ];
        let counts = place(&mut servers, 3000);
        assert_eq!(counts, vec![500, 1000, 1500]);
        // At every step each server is within one tenant of its share.
        let mut servers = [server("a", 1, 0), server("b", 3, 0)];
        for placed in 1..=1000u64 {
            place(&mut servers, 1);
            let share_a = placed as f64 / 4.0;
            assert!(
                (servers[0].tenants as f64 - share_a).abs() <= 1.0,
                "after {placed}: {} on a",
                servers[0].tenants
            );
        }
    }

    #[test]
    fn a_new_server_takes_new_tenants_until_it_has_caught_up() {
        let mut servers = [server("old", 100, 1000), server("new", 100, 0)];
        let counts = place(&mut servers, 1000);
        assert_eq!(counts, vec![1000, 1000]);
        let counts = place(&mut servers, 10);
        assert_eq!(counts, vec![1005, 1005]);
    }

    #[test]
    fn draining_disabled_and_full_servers_get_none() {
        let mut draining = server("draining", 10_000, 0);
        draining.state = ServerState::Draining;
        let mut disabled = server("disabled", 10_000, 0);
        disabled.state = ServerState::Disabled;
        let mut full = server("full", 10_000, 5);
        full.max_tenants = Some(5);
        let open = server("open", 1, 1_000_000);
        let servers = [draining, disabled, full, open];
        assert_eq!(choose(&servers).expect("one").name, "open");
    }

    #[test]
    fn a_full_server_takes_tenants_again_below_its_limit() {
        let mut small = server("small", 100, 0);
        small.max_tenants = Some(3);
        let mut servers = [small, server("big", 100, 0)];
        let counts = place(&mut servers, 10);
        assert_eq!(counts, vec![3, 7]);
        servers[0].tenants = 2;
        assert_eq!(choose(&servers).expect("one").name, "small");
    }

    #[test]
    fn no_capacity_says_why() {
        assert_eq!(
            choose(&[]).map(|s| s.name.clone()),
            Err(NoCapacity { active: 0, full: 0 })
        );
        let mut full = server("full", 100, 1);
        full.max_tenants = Some(1);
        let mut draining = server("draining", 100, 0);
        draining.state = ServerState::Draining;
        let err = choose(&[full, draining]).expect_err("none open");
        assert_eq!(err, NoCapacity { active: 1, full: 1 });
        assert_eq!(
            err.to_string(),
            "no database server can take a new tenant (1 active, 1 of them full)"
        );
    }

    #[test]
    fn ties_go_to_the_larger_weight_then_the_name() {
        let servers = [
            server("b", 100, 0),
            server("a", 100, 0),
            server("c", 200, 0),
        ];
        assert_eq!(choose(&servers).expect("one").name, "c");
        let servers = [server("b", 100, 0), server("a", 100, 0)];
        assert_eq!(choose(&servers).expect("one").name, "a");
    }

    #[test]
    fn states_round_trip() {
        for state in [
            ServerState::Active,
            ServerState::Draining,
            ServerState::Disabled,
        ] {
            assert_eq!(state.as_str().parse::<ServerState>(), Ok(state));
        }
        assert!("paused".parse::<ServerState>().is_err());
    }
}
