//! Constant folding without tract's memory budget (issue 18).
//!
//! tract folds a constant expression only while its result stays under
//! `max(its inputs, 4 MiB)`, so that int8 weights stay int8 in memory. On a large int8 model
//! that leaves weight work in every call: on the 64×64×3 IGN (13.9 M parameters) the
//! dequantized weights of the float layers (`DequantizeLinear` of an int8 constant: 16 MiB of
//! f32), their packing for the matrix kernels, and the int32 copies of the int8 kernels that
//! only feed a per-channel sum (the zero-point correction) were recomputed at each call, 75% of
//! its int8 time. [`fold_constants`] evaluates every node whose inputs are all constant, once,
//! at load, whatever the size: the plan then keeps the f32 weights of the float layers in
//! memory (what an fp32 model holds anyway) and drops the int32 copies once they are summed.

use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::konst::Const;
use tract_onnx::tract_core::ops::source::TypedSource;

/// Replace every node whose inputs are all constants by the constants it evaluates to, until
/// none is left, then drop what nothing reads any more. Returns how many nodes were folded.
pub fn fold_constants(model: &mut TypedModel) -> TractResult<usize> {
    let mut folded = 0;
    loop {
        let mut patch = None;
        for id in model.eval_order()? {
            let node = model.node(id);
            if node.op_is::<Const>() || node.op_is::<TypedSource>() || node.inputs.is_empty() {
                continue;
            }
            let facts = model.node_input_facts(id)?;
            if !facts.iter().all(|f| f.konst.is_some()) {
                continue;
            }
            let inputs = facts
                .iter()
                .map(|f| f.konst.clone().unwrap().into_tvalue())
                .collect();
            let Ok(Some(outputs)) = node.op.eval_out_of_plan(inputs) else {
                continue; // stateful, or needs the plan: leave it to run
            };
            let mut p = TypedModelPatch::default();
            for (ix, t) in outputs.into_iter().enumerate() {
                let exotic = model
                    .outlet_fact(OutletId::new(id, ix))?
                    .exotic_fact
                    .clone();
                let name = if ix == 0 {
                    node.name.clone()
                } else {
                    format!("{}.{ix}", node.name)
                };
                let wire = p.wire_node(
                    name,
                    Const::new_with_opt_exotic_fact(t.into_arc_tensor(), exotic)?,
                    &[],
                )?[0];
                p.shunt_outside(model, OutletId::new(id, ix), wire)?;
            }
            patch = Some(p);
            break;
        }
        match patch {
            Some(p) => {
                p.apply(model)?;
                folded += 1;
            }
            None => break,
        }
    }
    if folded > 0 {
        *model = std::mem::take(model).into_compact()?;
    }
    Ok(folded)
}
