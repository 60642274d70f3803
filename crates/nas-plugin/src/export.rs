//! Export macros: one line turns a `Strategy` or `Evaluator` type into a loadable plugin.
//!
//! They expand to the library header abi_stable looks for, written with `$crate` paths so a
//! plugin crate depends on `nas-plugin` alone.

/// The symbol abi_stable's loader looks up (checked against abi_stable in the tests).
#[cfg(test)]
pub const ROOT_MODULE_SYMBOL: &str = "_1as_0lib_1header_0root_bmodule_bloader";

/// `export_strategy!("random", RandomSearch);` exports `RandomSearch` as strategy `random`.
#[macro_export]
macro_rules! export_strategy {
    ($name:expr, $ty:ty) => {
        $crate::__export_plugin!(
            $name,
            $crate::abi::PluginKind::Strategy,
            $crate::abi::create_strategy::<$ty>
        );
    };
}

/// `export_evaluator!("cost", CostEvaluator);` exports `CostEvaluator` as evaluator `cost`.
#[cfg(feature = "evaluator")]
#[macro_export]
macro_rules! export_evaluator {
    ($name:expr, $ty:ty) => {
        $crate::__export_plugin!(
            $name,
            $crate::abi::PluginKind::Evaluator,
            $crate::abi::create_evaluator::<$ty>
        );
    };
}

/// Without the `evaluator` feature: a compile error that says how to turn it on.
#[cfg(not(feature = "evaluator"))]
#[macro_export]
macro_rules! export_evaluator {
    ($($any:tt)*) => {
        compile_error!(
            "export_evaluator! needs nas-plugin's `evaluator` feature: depend on it with \
             `nas-plugin = { ..., features = [\"evaluator\"] }`"
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __export_plugin {
    ($name:expr, $kind:expr, $create:expr) => {
        const _: () = {
            use abi_stable::library::{CheckTypeLayout, LibHeader, RootModuleResult};
            use abi_stable::prefix_type::PrefixTypeTrait;
            use abi_stable::std_types::{RResult, RStr, RString};
            use $crate::__private::abi_stable;
            use $crate::abi::{PluginInstanceBox, PluginKind, PluginModule, PluginModuleRef};

            extern "C" fn kind() -> PluginKind {
                $kind
            }
            extern "C" fn name() -> RString {
                RString::from($name)
            }
            extern "C" fn create(config: RStr<'_>) -> RResult<PluginInstanceBox, RString> {
                ($create)(config)
            }
            fn module() -> PluginModuleRef {
                PluginModule {
                    abi_version: $crate::abi::abi_version,
                    sdk_version: $crate::abi::sdk_version,
                    kind,
                    name,
                    create,
                }
                .leak_into_prefix()
            }
            extern "C" fn erased_module() -> RootModuleResult {
                abi_stable::library::__call_root_module_loader(module)
            }
            // The plugin crate may deny unsafe code: this header is the SDK's, not its own.
            #[allow(unsafe_code)]
            #[unsafe(export_name = "_1as_0lib_1header_0root_bmodule_bloader")]
            pub static LIB_HEADER: LibHeader = unsafe {
                LibHeader::from_constructor::<PluginModuleRef>(erased_module, CheckTypeLayout::Yes)
            };
        };
    };
}
