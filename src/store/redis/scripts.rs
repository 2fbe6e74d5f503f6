//! The Lua scripts of `lua/`, each prepended with the shared helpers. They run by EVALSHA; on
//! NOSCRIPT (a Redis restart, SCRIPT FLUSH, even one between two calls) the caller sends EVAL with
//! the source, which loads and runs the script in one step, so a flushed cache never reaches a
//! client.

const LIB: &str = include_str!("../../../lua/includes/lib.lua");

/// One script: its full source and the SHA1 Redis knows it by.
pub struct Script {
    pub source: String,
    pub hash: String,
}

impl Script {
    fn new(body: &str) -> Self {
        // `#!lua` (no flags): Redis then refuses, in cluster mode, any key outside the slot of the
        // script's KEYS, which proves the one-slot rule of lua/README.md on every call.
        let source = format!("#!lua\n{LIB}\n{body}");
        let hash = redis::Script::new(&source).get_hash().to_string();
        Self { source, hash }
    }
}

macro_rules! script {
    ($file:literal) => {
        Script::new(include_str!(concat!("../../../lua/", $file)))
    };
}

/// One compiled script per command.
pub struct Scripts {
    pub register: Script,
    pub heartbeat: Script,
    pub deregister: Script,
    pub assign: Script,
    pub release: Script,
    pub complete: Script,
    pub cancel: Script,
    pub expire: Script,
    pub get_specialist: Script,
    pub list_specialists: Script,
    pub get_assignment: Script,
    pub queue_position: Script,
    pub list_queue: Script,
    pub queue_stats: Script,
    pub performance: Script,
    pub in_flight: Script,
    pub restore: Script,
    pub candidates: Script,
    pub capable: Script,
    pub depend: Script,
    pub settle: Script,
    pub unbind: Script,
    pub void: Script,
}

impl Scripts {
    pub fn new() -> Self {
        Self {
            register: script!("register.lua"),
            heartbeat: script!("heartbeat.lua"),
            deregister: script!("deregister.lua"),
            assign: script!("assign.lua"),
            release: script!("release.lua"),
            complete: script!("complete.lua"),
            cancel: script!("cancel.lua"),
            expire: script!("expire.lua"),
            get_specialist: script!("get_specialist.lua"),
            list_specialists: script!("list_specialists.lua"),
            get_assignment: script!("get_assignment.lua"),
            queue_position: script!("queue_position.lua"),
            list_queue: script!("list_queue.lua"),
            queue_stats: script!("queue_stats.lua"),
            performance: script!("performance.lua"),
            in_flight: script!("in_flight.lua"),
            restore: script!("restore.lua"),
            candidates: script!("candidates.lua"),
            capable: script!("capable.lua"),
            depend: script!("depend.lua"),
            settle: script!("settle.lua"),
            unbind: script!("unbind.lua"),
            void: script!("void.lua"),
        }
    }
}

impl Default for Scripts {
    fn default() -> Self {
        Self::new()
    }
}
