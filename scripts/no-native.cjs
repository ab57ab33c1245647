// Runs when the native CPU addon could not be built: the project still works on the pure-TypeScript `ref` backend.
console.warn('mla-upcycle: the native cpu backend was not built (g++ or node headers missing); falling back to the ref backend.');
