"""Images in and boxes out: loading and preprocessing (`images`), filters, top-k masks
(`postprocess`), boxes from maps (`discovery`, `objects`) and the example gallery."""
