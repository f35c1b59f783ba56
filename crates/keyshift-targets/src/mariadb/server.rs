//! Which server answers, what it can do, and which strategy a mode picks
//! there. Pure: the caller runs `SELECT VERSION(), @@version_comment`.

use std::fmt;

use super::{precondition, protocol, MariaDbMode};
use crate::TargetError;

/// The server family: their account statements differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Flavor {
    /// MariaDB: `IDENTIFIED VIA a OR b`, roles without a host.
    MariaDb,
    /// MySQL (and its forks: Percona Server, ...): `RETAIN CURRENT
    /// PASSWORD`, roles are accounts.
    MySql,
}

/// A server's family and version, from `VERSION()` and `@@version_comment`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Server {
    pub(super) flavor: Flavor,
    pub(super) version: (u32, u32, u32),
}

/// How the target keeps two credentials valid, once the mode met a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Strategy {
    /// One account with two passwords.
    Dual,
    /// Two slot accounts sharing a role.
    BlueGreen,
}

/// MariaDB's first version with `IDENTIFIED VIA a OR b`.
const MARIADB_DUAL: (u32, u32, u32) = (10, 4, 0);
/// MariaDB's first version with `ACCOUNT LOCK` (roles came in 10.0.5).
const MARIADB_LOCK: (u32, u32, u32) = (10, 4, 2);
/// MySQL's first version with `RETAIN CURRENT PASSWORD`.
const MYSQL_DUAL: (u32, u32, u32) = (8, 0, 14);
/// MySQL's first version with roles (`ACCOUNT LOCK` came in 5.7.6).
const MYSQL_ROLES: (u32, u32, u32) = (8, 0, 0);

impl Server {
    /// Reads `VERSION()` (`10.11.19-MariaDB-0+deb12u1`, `8.0.36`,
    /// `5.7.44-log`) and `@@version_comment`: MariaDB when either says so
    /// (a replication-style `5.5.5-` prefix before a MariaDB version is
    /// skipped), MySQL otherwise.
    ///
    /// # Errors
    ///
    /// [`TargetError::Protocol`] when no `major.minor` leads the version.
    pub(super) fn parse(version: &str, comment: &str) -> Result<Server, TargetError> {
        let mariadb = version.to_ascii_lowercase().contains("mariadb")
            || comment.to_ascii_lowercase().contains("mariadb");
        let digits = match version.strip_prefix("5.5.5-") {
            Some(rest) if mariadb => rest,
            _ => version,
        };
        let numeric: &str = digits
            .split(|c: char| !(c.is_ascii_digit() || c == '.'))
            .next()
            .unwrap_or("");
        let mut parts = numeric.split('.').map(str::parse::<u32>);
        let (Some(Ok(major)), Some(Ok(minor))) = (parts.next(), parts.next()) else {
            return Err(protocol(format!("unreadable server version `{version}`")));
        };
        let patch = match parts.next() {
            Some(Ok(p)) => p,
            _ => 0,
        };
        Ok(Server {
            flavor: if mariadb {
                Flavor::MariaDb
            } else {
                Flavor::MySql
            },
            version: (major, minor, patch),
        })
    }

    /// Whether one account can accept two passwords at once.
    pub(super) fn dual_passwords(&self) -> bool {
        self.version
            >= match self.flavor {
                Flavor::MariaDb => MARIADB_DUAL,
                Flavor::MySql => MYSQL_DUAL,
            }
    }

    /// Whether blue-green works: roles, default roles and `ACCOUNT LOCK`.
    pub(super) fn blue_green(&self) -> bool {
        self.version
            >= match self.flavor {
                Flavor::MariaDb => MARIADB_LOCK,
                Flavor::MySql => MYSQL_ROLES,
            }
    }

    /// The strategy `mode` means on this server.
    ///
    /// # Errors
    ///
    /// [`TargetError::Precondition`] when the server cannot do the mode,
    /// saying which mode (if any) would work.
    pub(super) fn strategy(&self, mode: MariaDbMode) -> Result<Strategy, TargetError> {
        let dual = self.dual_passwords();
        let blue_green = self.blue_green();
        match mode {
            MariaDbMode::Dual if dual => Ok(Strategy::Dual),
            MariaDbMode::BlueGreen if blue_green => Ok(Strategy::BlueGreen),
            MariaDbMode::Auto if dual => Ok(Strategy::Dual),
            MariaDbMode::Auto if blue_green => Ok(Strategy::BlueGreen),
            MariaDbMode::Dual if blue_green => Err(precondition(format!(
                "{self} cannot accept two passwords per account (dual mode needs MariaDB 10.4+ \
                 or MySQL 8.0.14+): use mode \"blue-green\""
            ))),
            MariaDbMode::BlueGreen if dual => Err(precondition(format!(
                "{self} lacks roles or ACCOUNT LOCK, which blue-green mode needs \
                 (MariaDB 10.4.2+ or MySQL 8.0+): use mode \"dual\""
            ))),
            _ => Err(precondition(format!(
                "{self} supports neither dual passwords (MariaDB 10.4+, MySQL 8.0.14+) nor \
                 blue-green slots (roles and ACCOUNT LOCK: MariaDB 10.4.2+, MySQL 8.0+): \
                 upgrade the server"
            ))),
        }
    }
}

impl fmt::Display for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (major, minor, patch) = self.version;
        let name = match self.flavor {
            Flavor::MariaDb => "MariaDB",
            Flavor::MySql => "MySQL",
        };
        write!(f, "{name} {major}.{minor}.{patch}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: &str, comment: &str) -> Server {
        Server::parse(v, comment).unwrap_or_else(|e| panic!("{v}: {e}"))
    }

    #[test]
    fn versions_parse_with_their_family() {
        for (v, comment, flavor, version) in [
            (
                "10.11.19-MariaDB-0+deb12u1",
                "Debian 12",
                Flavor::MariaDb,
                (10, 11, 19),
            ),
            ("10.4.0-MariaDB", "", Flavor::MariaDb, (10, 4, 0)),
            ("5.5.5-10.5.8-MariaDB-log", "", Flavor::MariaDb, (10, 5, 8)),
            (
                "10.6.16",
                "mariadb.org binary distribution",
                Flavor::MariaDb,
                (10, 6, 16),
            ),
            (
                "11.4.2-MariaDB-log",
                "MariaDB Server",
                Flavor::MariaDb,
                (11, 4, 2),
            ),
            (
                "8.0.36",
                "MySQL Community Server - GPL",
                Flavor::MySql,
                (8, 0, 36),
            ),
            (
                "5.7.44-log",
                "MySQL Community Server (GPL)",
                Flavor::MySql,
                (5, 7, 44),
            ),
            (
                "8.0.36-28",
                "Percona Server (GPL), Release 28",
                Flavor::MySql,
                (8, 0, 36),
            ),
            ("8.4", "", Flavor::MySql, (8, 4, 0)),
        ] {
            assert_eq!(parse(v, comment), Server { flavor, version }, "{v}");
        }
        for bad in ["", "MariaDB", "x.y.z", "10", "-10.4"] {
            let e = Server::parse(bad, "").unwrap_err();
            assert!(matches!(e, TargetError::Protocol { .. }), "{bad:?}: {e}");
        }
    }

    #[test]
    fn capabilities_follow_the_versions() {
        let cases = [
            ("10.11.19-MariaDB-0+deb12u1", true, true),
            ("10.4.0-MariaDB", true, false),
            ("10.4.2-MariaDB", true, true),
            ("10.3.39-MariaDB", false, false),
            ("8.0.36", true, true),
            ("8.0.14", true, true),
            ("8.0.13", false, true),
            ("5.7.44-log", false, false),
        ];
        for (v, dual, blue_green) in cases {
            let s = parse(v, "");
            assert_eq!(
                (s.dual_passwords(), s.blue_green()),
                (dual, blue_green),
                "{v}"
            );
        }
    }

    #[test]
    fn modes_resolve_or_say_what_would_work() {
        use MariaDbMode::*;
        let mariadb = parse("10.11.19-MariaDB-0+deb12u1", "Debian 12");
        assert_eq!(mariadb.strategy(Auto).unwrap(), Strategy::Dual);
        assert_eq!(mariadb.strategy(Dual).unwrap(), Strategy::Dual);
        assert_eq!(mariadb.strategy(BlueGreen).unwrap(), Strategy::BlueGreen);

        let mysql8 = parse("8.0.36", "");
        assert_eq!(mysql8.strategy(Auto).unwrap(), Strategy::Dual);
        assert_eq!(mysql8.strategy(BlueGreen).unwrap(), Strategy::BlueGreen);

        let mysql_early8 = parse("8.0.13", "");
        assert_eq!(mysql_early8.strategy(Auto).unwrap(), Strategy::BlueGreen);
        let e = mysql_early8.strategy(Dual).unwrap_err();
        assert!(matches!(e, TargetError::Precondition { .. }), "{e}");
        assert!(e.to_string().contains("MySQL 8.0.13"), "{e}");
        assert!(e.to_string().contains("use mode \"blue-green\""), "{e}");

        let early_lock = parse("10.4.1-MariaDB", "");
        let e = early_lock.strategy(BlueGreen).unwrap_err();
        assert!(e.to_string().contains("use mode \"dual\""), "{e}");

        for old in ["5.7.44-log", "10.3.39-MariaDB"] {
            for mode in [Auto, Dual, BlueGreen] {
                let e = parse(old, "").strategy(mode).unwrap_err();
                assert!(matches!(e, TargetError::Precondition { .. }), "{e}");
                assert!(e.to_string().contains("upgrade the server"), "{old}: {e}");
            }
        }
    }
}
