//! lstmkd's two open ends: PyTorch weights in (`import`), deployable files out (`export`:
//! ONNX and safetensors), both under PyTorch's names (`torch_names`).

pub mod export;
pub mod import;
pub mod onnx;
pub mod state_dict;
pub mod torch_names;
