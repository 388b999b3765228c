//! Why a step failed, in words a user can act on: wasmtime's errors read down their whole chain
//! (a guest's `exit`, a host limit, a trap), each trap kind in plain words with a hint, and a
//! shadow-stack overflow told apart from a stray pointer.

use meridian_protocol::Masker;

use crate::error::StepFailure;
use crate::types::Call;

/// Extracts Rust's panic report (`panicked at file:line:col:\nmessage`) from captured stderr.
pub(crate) fn panic_message(stderr: &str) -> Option<String> {
    let start = stderr.find("panicked at ")?;
    let rest = &stderr[start..];
    let end = rest.find("\nnote: ").unwrap_or(rest.len());
    Some(rest[..end].trim().replace('\n', " "))
}

/// The largest initial value of a module's first mutable `i32` global, over the component's
/// core modules: Rust and C (wasm-ld, stack first) start `__stack_pointer` at the top of the
/// shadow stack, so this is its size. `None` for components without one.
pub(crate) fn shadow_stack_size(bytes: &[u8]) -> Option<u32> {
    let mut best: Option<u32> = None;
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        let Ok(wasmparser::Payload::GlobalSection(globals)) = payload else {
            continue;
        };
        let first = globals
            .into_iter()
            .flatten()
            .find(|g| g.ty.mutable && g.ty.content_type == wasmparser::ValType::I32);
        let Some(g) = first else { continue };
        let mut ops = g.init_expr.get_operators_reader();
        if let Ok(wasmparser::Operator::I32Const { value }) = ops.read()
            && let Ok(v) = u32::try_from(value)
            && v > 0
        {
            best = Some(best.map_or(v, |b| b.max(v)));
        }
    }
    best
}

/// Whether a trap's backtrace shows runaway recursion: one function making up most of many
/// frames.
fn recursing(e: &wasmtime::Error) -> bool {
    let Some(bt) = e.downcast_ref::<wasmtime::WasmBacktrace>() else {
        return false;
    };
    let frames = bt.frames();
    if frames.len() < 16 {
        return false;
    }
    let mut counts: std::collections::HashMap<u32, usize> = std::collections::HashMap::new();
    for f in frames {
        *counts.entry(f.func_index()).or_default() += 1;
    }
    counts
        .values()
        .max()
        .is_some_and(|&n| n * 2 >= frames.len())
}

/// A trap in plain words, with what to do about it.
fn trap_words(trap: wasmtime::Trap) -> String {
    use wasmtime::Trap as T;
    let (what, hint) = match trap {
        T::StackOverflow => (
            "stack overflow: the step recursed too deeply (the wasm call stack ran out)",
            "bound the recursion, or make it a loop",
        ),
        T::MemoryOutOfBounds => (
            "the step read or wrote outside its memory (out of bounds memory access)",
            "a bug in the step (a bad pointer or index); report it to its author",
        ),
        T::HeapMisaligned => (
            "the step made a misaligned atomic memory access",
            "a bug in the step; report it to its author",
        ),
        T::TableOutOfBounds | T::IndirectCallToNull | T::BadSignature => (
            "the step called a function through a bad pointer",
            "a bug in the step (memory corruption or a bad function pointer); report it to its author",
        ),
        T::IntegerOverflow => (
            "integer overflow in the step",
            "a bug in the step; report it to its author",
        ),
        T::IntegerDivisionByZero => (
            "the step divided an integer by zero",
            "a bug in the step; report it to its author",
        ),
        T::BadConversionToInteger => (
            "the step converted a float that does not fit into an integer",
            "a bug in the step; report it to its author",
        ),
        T::UnreachableCodeReached => (
            "the step aborted (it reached `unreachable`: a panic or an abort)",
            "the step's own message, when it printed one, is above; report it to its author",
        ),
        T::OutOfFuel => ("the step ran out of fuel", "raise its limits"),
        _ => return format!("the step trapped: {trap}"),
    };
    format!("{what}; {hint}")
}

/// Turns a wasmtime error from instantiation or the call into the failure the engine acts on.
///
/// The error's outermost text is often only "error while executing at wasm backtrace:": the
/// cause is further down the chain (a guest's `exit`, a host limit, a trap), so the whole
/// chain is read.
pub(crate) fn classify(
    e: &wasmtime::Error,
    instantiating: bool,
    memory_exceeded: bool,
    call: &Call,
    stderr: &str,
    masker: &Masker,
    shadow_stack: Option<u32>,
) -> StepFailure {
    let trap = e.downcast_ref::<wasmtime::Trap>().copied();
    if trap == Some(wasmtime::Trap::Interrupt) {
        return StepFailure::Timeout(call.timeout);
    }
    if memory_exceeded {
        return StepFailure::OutOfMemory {
            limit: call.memory_limit,
        };
    }
    let table_full = e.chain().any(|c| {
        matches!(
            c.downcast_ref::<wasmtime::component::ResourceTableError>(),
            Some(wasmtime::component::ResourceTableError::Full)
        )
    });
    if table_full {
        return StepFailure::Trap(format!(
            "the step held more than {} host handles at once (open files, directories and streams): its `limits.handles`; close what it no longer uses, or raise the step's `limits.handles`",
            call.handle_limit
        ));
    }
    if let Some(exit) = e.downcast_ref::<wasmtime_wasi::I32Exit>() {
        return StepFailure::Trap(format!(
            "the step called exit({}) instead of returning a result; exit ends the whole component, so a step must return from `run` (with an error to fail)",
            exit.0
        ));
    }
    let what = match trap {
        // Rust and C keep locals in a shadow stack at the bottom of linear memory: running past
        // it shows up as an access below address 0, wrapped to the top of the address space.
        Some(wasmtime::Trap::MemoryOutOfBounds) if recursing(e) => match shadow_stack {
            Some(n) => format!(
                "stack overflow in the step (its shadow stack is {n} bytes): deep recursion or large locals; bound the recursion, or move large values to the heap"
            ),
            None => "stack overflow in the step (its shadow stack in linear memory ran out): deep recursion or large locals; bound the recursion, or move large values to the heap".to_string(),
        },
        Some(t) => trap_words(t),
        // Raised by the host (a sandbox limit such as the planned-change cap): the root
        // cause carries its message.
        None => e.root_cause().to_string(),
    };
    let msg = match panic_message(stderr) {
        Some(p) => format!("guest {p} ({what})"),
        None => what,
    };
    let msg = masker.mask_string(msg);
    if instantiating {
        StepFailure::Instantiate(msg)
    } else {
        StepFailure::Trap(msg)
    }
}
