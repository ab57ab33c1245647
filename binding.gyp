{
  "targets": [
    {
      "target_name": "mla_cpu",
      "sources": [
        "native/cpu/addon.cpp",
        "native/cpu/blas.cpp",
        "native/cpu/matmul.cpp",
        "native/cpu/elementwise.cpp",
        "native/cpu/layout.cpp",
        "native/cpu/norm.cpp",
        "native/cpu/rope.cpp",
        "native/cpu/attention.cpp",
        "native/cpu/swiglu.cpp",
        "native/cpu/embedding.cpp",
        "native/cpu/losses.cpp",
        "native/cpu/optim.cpp",
        "native/cpu/half.cpp",
        "native/cpu/linalg.cpp",
        "native/cpu/simd.cpp"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_CPP_EXCEPTIONS", "NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags!": ["-fno-exceptions", "-O2"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17", "-O2"],
      "cflags": ["-O3", "-march=native", "-fno-math-errno", "-ffp-contract=fast", "-fexceptions"],
      "cflags_cc": ["-std=c++17", "-O3", "-march=native", "-fno-math-errno", "-ffp-contract=fast", "-fexceptions", "-frtti"],
      "libraries": ["-ldl", "-pthread"],
      "ldflags": ["-pthread"]
    }
  ]
}
