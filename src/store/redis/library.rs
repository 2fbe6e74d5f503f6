//! The Lua of `lua/` as one Redis Functions library: a prelude generated from `domain::rules`
//! (bands, factors, prior, window, queue band, refusal codes) and `keys` (key names, as `K`), the
//! includes in dependency order,
//! then the functions, each registered as `<library>_<name>`. The library's name carries a hash of
//! its source, so replicas of different builds never call each other's functions; it is loaded
//! once per Redis (FUNCTION LOAD, on every primary of a cluster) and again whenever Redis answers
//! that a function is missing (a restart without persistence, FUNCTION FLUSH).

use std::fmt::Write as _;

use sha2::{Digest, Sha256};

use super::keys::{slot, SUBTASK_DIRECTORY, TYPE_PREFIX};

use crate::domain::rules::{
    RefusalCode, AVAILABILITY_FACTORS, LOAD_BANDS, LOAD_FACTOR_OVERLOADED, PERFORMANCE_WINDOW,
    PRIOR_SUCCESSES, PRIOR_WEIGHT, QUEUE_BAND,
};

/// The free index's and the lease index's last member: longer than a listpack entry may be, so
/// both stay skiplists (a ZADD into a 128-entry listpack costs several times one into a skiplist).
pub const SENTINEL: &str =
    "~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~";

/// Shared helpers, in the order they build on each other.
const INCLUDES: [(&str, &str); 9] = [
    ("context", include_str!("../../../lua/includes/context.lua")),
    ("text", include_str!("../../../lua/includes/text.lua")),
    ("scoring", include_str!("../../../lua/includes/scoring.lua")),
    (
        "specialists",
        include_str!("../../../lua/includes/specialists.lua"),
    ),
    (
        "subtasks",
        include_str!("../../../lua/includes/subtasks.lua"),
    ),
    ("events", include_str!("../../../lua/includes/events.lua")),
    ("queue", include_str!("../../../lua/includes/queue.lua")),
    ("pick", include_str!("../../../lua/includes/pick.lua")),
    (
        "lifecycle",
        include_str!("../../../lua/includes/lifecycle.lua"),
    ),
];

/// The files defining the functions (`fn_<name>`).
const FUNCTION_FILES: [(&str, &str); 14] = [
    ("assign", include_str!("../../../lua/functions/assign.lua")),
    (
        "complete",
        include_str!("../../../lua/functions/complete.lua"),
    ),
    (
        "release",
        include_str!("../../../lua/functions/release.lua"),
    ),
    ("cancel", include_str!("../../../lua/functions/cancel.lua")),
    (
        "register",
        include_str!("../../../lua/functions/register.lua"),
    ),
    (
        "heartbeat",
        include_str!("../../../lua/functions/heartbeat.lua"),
    ),
    (
        "deregister",
        include_str!("../../../lua/functions/deregister.lua"),
    ),
    ("expire", include_str!("../../../lua/functions/expire.lua")),
    ("purge", include_str!("../../../lua/functions/purge.lua")),
    ("reads", include_str!("../../../lua/functions/reads.lua")),
    (
        "candidates",
        include_str!("../../../lua/functions/candidates.lua"),
    ),
    (
        "dependencies",
        include_str!("../../../lua/functions/dependencies.lua"),
    ),
    ("ids", include_str!("../../../lua/functions/ids.lua")),
    ("setup", include_str!("../../../lua/functions/setup.lua")),
];

/// Every function of the library.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Function {
    Assign,
    Complete,
    Release,
    Cancel,
    Register,
    Heartbeat,
    Deregister,
    Expire,
    Purge,
    GetAssignment,
    InFlight,
    QueuePosition,
    ListQueue,
    QueueStats,
    GetSpecialist,
    ListSpecialists,
    Performance,
    Capable,
    Candidates,
    Depend,
    Settle,
    Unbind,
    Void,
    Adopt,
    Restore,
}

impl Function {
    pub const ALL: [Function; 25] = [
        Function::Assign,
        Function::Complete,
        Function::Release,
        Function::Cancel,
        Function::Register,
        Function::Heartbeat,
        Function::Deregister,
        Function::Expire,
        Function::Purge,
        Function::GetAssignment,
        Function::InFlight,
        Function::QueuePosition,
        Function::ListQueue,
        Function::QueueStats,
        Function::GetSpecialist,
        Function::ListSpecialists,
        Function::Performance,
        Function::Capable,
        Function::Candidates,
        Function::Depend,
        Function::Settle,
        Function::Unbind,
        Function::Void,
        Function::Adopt,
        Function::Restore,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Function::Assign => "assign",
            Function::Complete => "complete",
            Function::Release => "release",
            Function::Cancel => "cancel",
            Function::Register => "register",
            Function::Heartbeat => "heartbeat",
            Function::Deregister => "deregister",
            Function::Expire => "expire",
            Function::Purge => "purge",
            Function::GetAssignment => "get_assignment",
            Function::InFlight => "in_flight",
            Function::QueuePosition => "queue_position",
            Function::ListQueue => "list_queue",
            Function::QueueStats => "queue_stats",
            Function::GetSpecialist => "get_specialist",
            Function::ListSpecialists => "list_specialists",
            Function::Performance => "performance",
            Function::Capable => "capable",
            Function::Candidates => "candidates",
            Function::Depend => "depend",
            Function::Settle => "settle",
            Function::Unbind => "unbind",
            Function::Void => "void",
            Function::Adopt => "adopt",
            Function::Restore => "restore",
        }
    }

    /// Reads write nothing: registered `no-writes`.
    fn read_only(self) -> bool {
        matches!(
            self,
            Function::GetAssignment
                | Function::InFlight
                | Function::QueuePosition
                | Function::ListQueue
                | Function::QueueStats
                | Function::GetSpecialist
                | Function::ListSpecialists
                | Function::Performance
                | Function::Capable
                | Function::Candidates
        )
    }
}

/// The assembled library.
#[derive(Debug, Clone)]
pub struct Library {
    /// `sb_<hash>`: the library's name and every function's prefix.
    pub name: String,
    /// What FUNCTION LOAD gets.
    pub source: String,
    /// The hash of the code (prelude included), part of every fingerprint.
    pub hash: String,
    /// The FCALL name of each function, in `Function::ALL` order.
    names: Vec<String>,
}

impl Library {
    pub fn new() -> Self {
        let mut body = prelude();
        for (name, text) in INCLUDES {
            let _ = writeln!(body, "-- includes/{name}.lua\n{text}");
        }
        for (name, text) in FUNCTION_FILES {
            let _ = writeln!(body, "-- functions/{name}.lua\n{text}");
        }
        let digest = Sha256::digest(body.as_bytes());
        let hash: String = digest[..6]
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        let name = format!("sb_{hash}");
        let mut source = format!("#!lua name={name}\n{body}\n");
        let mut names = Vec::with_capacity(Function::ALL.len());
        for function in Function::ALL {
            let full = format!("{name}_{}", function.name());
            let flags = if function.read_only() {
                "{'no-writes'}"
            } else {
                "{}"
            };
            let _ = writeln!(
                source,
                "redis.register_function{{function_name = '{full}', callback = fn_{}, flags = {flags}}}",
                function.name()
            );
            names.push(full);
        }
        Self {
            name,
            source,
            hash,
            names,
        }
    }

    /// The FCALL name of a function.
    pub fn function(&self, function: Function) -> &str {
        let index = Function::ALL
            .iter()
            .position(|known| *known == function)
            .expect("every function is listed in ALL");
        &self.names[index]
    }
}

impl Default for Library {
    fn default() -> Self {
        Self::new()
    }
}

/// The text of one include (`lua/includes/<name>.lua`), for tests that run a piece of the library.
pub fn include(name: &str) -> Option<&'static str> {
    INCLUDES
        .iter()
        .find(|(known, _)| *known == name)
        .map(|(_, text)| *text)
}

/// The rules' constants as Lua: the only place the library gets them from.
pub fn prelude() -> String {
    let mut lua = String::from(
        "-- prelude: generated from src/domain/rules.rs and src/store/redis/keys.rs\n",
    );
    lua.push_str("local function load_factor(active)\n");
    for (most, factor) in LOAD_BANDS {
        let _ = writeln!(lua, "  if active <= {most} then return {factor:?} end");
    }
    let _ = writeln!(lua, "  return {LOAD_FACTOR_OVERLOADED:?}\nend");
    lua.push_str("local AVAILABILITY = {");
    for (availability, factor) in AVAILABILITY_FACTORS {
        let _ = write!(lua, "{} = {factor:?}, ", availability.as_str());
    }
    lua.push_str("}\n");
    let _ = writeln!(lua, "local PRIOR_SUCCESSES = {PRIOR_SUCCESSES:?}");
    let _ = writeln!(lua, "local PRIOR_WEIGHT = {PRIOR_WEIGHT:?}");
    let _ = writeln!(lua, "local WINDOW = {PERFORMANCE_WINDOW}");
    let _ = writeln!(lua, "local QUEUE_BAND = {QUEUE_BAND}");
    let _ = writeln!(lua, "local SENTINEL = '{SENTINEL}'");
    lua.push_str("local K = {");
    for (name, key) in slot::ALL {
        let _ = write!(lua, "{name} = '{key}', ");
    }
    lua.push_str("}\n");
    for (name, template) in [
        ("type_prefix", &TYPE_PREFIX),
        ("subtask_directory", &SUBTASK_DIRECTORY),
    ] {
        let _ = writeln!(
            lua,
            "local function {name}(namespace, id) return '{}' .. namespace .. '{}' .. id .. '{}' end",
            template.opening, template.middle, template.closing
        );
    }
    lua.push_str("local E = {");
    for refusal in RefusalCode::ALL {
        let _ = write!(lua, "{} = {}, ", refusal.lua_name(), refusal as i64);
    }
    lua.push_str("}\n");
    lua
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_names_come_only_from_the_prelude() {
        let sources = INCLUDES.iter().chain(FUNCTION_FILES.iter());
        for (name, text) in sources {
            for written in ["'sb:", "P .. '", "prefix .. '", "'}:"] {
                assert!(
                    !text.contains(written),
                    "{name}.lua writes a key name ({written}); use K or the prelude's templates"
                );
            }
        }
        let lua = prelude();
        assert!(lua.contains("subtask = 't:'"), "{lua}");
        assert!(lua.contains("local function type_prefix(namespace, id) return 'sb:{' .. namespace .. ':' .. id .. '}:' end"), "{lua}");
    }

    #[test]
    fn the_prelude_carries_the_rules() {
        let lua = prelude();
        assert!(lua.contains("if active <= 2 then return 0.8 end"));
        assert!(lua.contains("return 0.1\nend"));
        assert!(lua.contains("away = 0.3"));
        assert!(lua.contains("local PRIOR_SUCCESSES = 1.5"));
        assert!(lua.contains("local QUEUE_BAND = 1099511627776"));
        assert!(lua.contains("STALE_EPOCH = 5"));
        assert!(SENTINEL.len() > 64, "longer than a listpack entry");
    }

    #[test]
    fn every_function_is_registered_under_the_library_name() {
        let library = Library::new();
        for function in Function::ALL {
            let name = library.function(function);
            assert!(name.starts_with(&library.name));
            assert!(library
                .source
                .contains(&format!("function_name = '{name}'")));
            assert!(library
                .source
                .contains(&format!("local function fn_{}(", function.name())));
        }
    }
}
