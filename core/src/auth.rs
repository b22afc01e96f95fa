//! User roles. What each role may do is decided by the HTTP layer; the names live here so
//! that the store, the CLI and the API agree on them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A role a user or token has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything, including users, tokens and device approval.
    Admin,
    /// Network engineers: leakage, devices, dead letters.
    Engineer,
    /// Dispatch centre: pressure management, PRV set points.
    Dispatcher,
    /// Lab staff: water-quality alerts.
    Lab,
    /// Read-only access to readings, sensors and events.
    Viewer,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 5] = [
        Role::Admin,
        Role::Engineer,
        Role::Dispatcher,
        Role::Lab,
        Role::Viewer,
    ];

    /// The name used on the command line and in the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Engineer => "engineer",
            Role::Dispatcher => "dispatcher",
            Role::Lab => "lab",
            Role::Viewer => "viewer",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                format!("unknown role `{s}`; expected admin, engineer, dispatcher, lab or viewer")
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip_and_reject_unknown() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>().unwrap(), r);
        }
        assert!("root".parse::<Role>().unwrap_err().contains("`root`"));
    }
}
