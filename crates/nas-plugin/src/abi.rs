//! The binary interface between the host and a plugin library. Kept deliberately tiny: a root
//! module (ABI version, SDK version, kind, name, constructor) and one `call(method, json)`
//! entry point on the instance. Every message is JSON defined in `messages`.

#![allow(non_local_definitions)]

use std::panic::{AssertUnwindSafe, catch_unwind};

use abi_stable::{
    StableAbi, declare_root_module_statics,
    library::RootModule,
    package_version_strings, sabi_trait,
    sabi_types::VersionStrings,
    std_types::{RBox, RResult, RStr, RString},
};

use crate::messages::{Observation, StrategyContext};
use crate::traits::Strategy;
#[cfg(feature = "evaluator")]
use crate::{
    messages::{EvalRequest, EvaluatorContext},
    traits::Evaluator,
};

/// Bumped whenever a message or the call protocol changes incompatibly.
pub const ABI_VERSION: u32 = 1;

/// The SDK's crate version; plugins built against another one are refused.
pub const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");

#[repr(u8)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PluginKind {
    Strategy,
    Evaluator,
}

impl PluginKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PluginKind::Strategy => "strategy",
            PluginKind::Evaluator => "evaluator",
        }
    }
}

/// A live plugin object. `call` never unwinds: panics come back as `RErr`.
#[sabi_trait]
pub trait PluginInstance: Send {
    fn call(&mut self, method: RStr<'_>, payload: RStr<'_>) -> RResult<RString, RString>;
}

pub type PluginInstanceBox = PluginInstance_TO<'static, RBox<()>>;

/// The root module every plugin library exports.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModuleRef)))]
#[sabi(missing_field(panic))]
pub struct PluginModule {
    pub abi_version: extern "C" fn() -> u32,
    pub sdk_version: extern "C" fn() -> RString,
    pub kind: extern "C" fn() -> PluginKind,
    pub name: extern "C" fn() -> RString,
    #[sabi(last_prefix_field)]
    pub create: extern "C" fn(config: RStr<'_>) -> RResult<PluginInstanceBox, RString>,
}

impl RootModule for PluginModuleRef {
    declare_root_module_statics! {PluginModuleRef}
    const BASE_NAME: &'static str = "nas_plugin";
    const NAME: &'static str = "nas_plugin";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}

thread_local! {
    /// Set while this thread runs a plugin call whose panics become errors.
    static IN_GUARDED_CALL: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// A panic inside a guarded call is reported to the host as an error; the default hook would
/// also print Rust's raw panic message before that clean error. Other panics (e.g. on a
/// thread the plugin started) still reach the previous hook.
fn quiet_panics_in_guarded_calls() {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !IN_GUARDED_CALL.with(|c| c.get()) {
                previous(info);
            }
        }));
    });
}

/// Runs `f`, turning both errors and panics into an error string.
pub fn guarded<T>(f: impl FnOnce() -> Result<T, String>) -> RResult<T, RString> {
    quiet_panics_in_guarded_calls();
    let outer = IN_GUARDED_CALL.with(|c| c.replace(true));
    let result = catch_unwind(AssertUnwindSafe(f));
    IN_GUARDED_CALL.with(|c| c.set(outer));
    match result {
        Ok(Ok(v)) => RResult::ROk(v),
        Ok(Err(e)) => RResult::RErr(RString::from(e)),
        Err(panic) => RResult::RErr(RString::from(format!(
            "panicked: {}",
            panic_message(&panic)
        ))),
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic payload".to_string()
    }
}

fn decode<T: serde::de::DeserializeOwned>(what: &str, payload: RStr<'_>) -> Result<T, String> {
    serde_json::from_str(payload.as_str()).map_err(|e| format!("bad {what} message: {e}"))
}

fn encode<T: serde::Serialize>(value: &T) -> Result<String, String> {
    serde_json::to_string(value).map_err(|e| format!("cannot encode reply: {e}"))
}

struct StrategyAdapter<S>(S);

impl<S: Strategy> PluginInstance for StrategyAdapter<S> {
    fn call(&mut self, method: RStr<'_>, payload: RStr<'_>) -> RResult<RString, RString> {
        guarded(|| {
            let reply = match method.as_str() {
                "ask" => {
                    let n: usize = decode("ask", payload)?;
                    encode(&self.0.ask(n).map_err(|e| e.to_string())?)?
                }
                "tell" => {
                    let obs: Vec<Observation> = decode("tell", payload)?;
                    self.0.tell(&obs).map_err(|e| e.to_string())?;
                    "null".to_string()
                }
                "save" => encode(&self.0.save().map_err(|e| e.to_string())?)?,
                "restore" => {
                    let state: serde_json::Value = decode("restore", payload)?;
                    self.0.restore(state).map_err(|e| e.to_string())?;
                    "null".to_string()
                }
                other => return Err(format!("strategy has no method `{other}`")),
            };
            Ok(RString::from(reply))
        })
    }
}

#[cfg(feature = "evaluator")]
struct EvaluatorAdapter<E>(E);

#[cfg(feature = "evaluator")]
impl<E: Evaluator> PluginInstance for EvaluatorAdapter<E> {
    fn call(&mut self, method: RStr<'_>, payload: RStr<'_>) -> RResult<RString, RString> {
        guarded(|| {
            let reply = match method.as_str() {
                "evaluate" => {
                    let req: EvalRequest = decode("evaluate", payload)?;
                    encode(&self.0.evaluate(&req).map_err(|e| e.to_string())?)?
                }
                "observe" => {
                    let trials: Vec<Observation> = decode("observe", payload)?;
                    encode(&self.0.observe(&trials).map_err(|e| e.to_string())?)?
                }
                other => return Err(format!("evaluator has no method `{other}`")),
            };
            Ok(RString::from(reply))
        })
    }
}

/// Used by `export_strategy!`: builds a strategy instance from a JSON `StrategyContext`.
pub fn create_strategy<S: Strategy>(config: RStr<'_>) -> RResult<PluginInstanceBox, RString> {
    guarded(|| {
        let ctx: StrategyContext = decode("strategy context", config)?;
        let s = S::new(ctx).map_err(|e| e.to_string())?;
        Ok(PluginInstance_TO::from_value(
            StrategyAdapter(s),
            abi_stable::sabi_trait::TD_Opaque,
        ))
    })
}

/// Used by `export_evaluator!`: builds an evaluator instance from a JSON `EvaluatorContext`.
#[cfg(feature = "evaluator")]
pub fn create_evaluator<E: Evaluator>(config: RStr<'_>) -> RResult<PluginInstanceBox, RString> {
    guarded(|| {
        let ctx: EvaluatorContext = decode("evaluator context", config)?;
        let e = E::new(ctx).map_err(|e| e.to_string())?;
        Ok(PluginInstance_TO::from_value(
            EvaluatorAdapter(e),
            abi_stable::sabi_trait::TD_Opaque,
        ))
    })
}

pub extern "C" fn abi_version() -> u32 {
    ABI_VERSION
}

pub extern "C" fn sdk_version() -> RString {
    RString::from(SDK_VERSION)
}
