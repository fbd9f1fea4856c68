// Import rules checked by test/unit/tidy.test.ts over the compiled build (dist/): layers import only
// downwards, so no module may reach itself again through its imports.
module.exports = {
  forbidden: [
    { name: 'no-circular', severity: 'error', comment: 'an import cycle: the layers must import only downwards', from: {}, to: { circular: true } },
  ],
  options: { doNotFollow: { path: 'node_modules' }, exclude: { path: 'node_modules' } },
};
