"""The vocabulary every part of Shipyard shares: tensors and datatypes (``types``) and the
error hierarchy with protocol-free codes (``errors``). numpy only; no server state."""
