/// <reference types="vitest/config" />
import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

// The review service serves the built page at "/" and "/assets/*"; in development the
// Vite server forwards API calls to a locally running review service.
export default defineConfig({
  base: "/",
  plugins: [react()],
  server: {
    proxy: {
      "/api": { target: "http://127.0.0.1:8000", changeOrigin: false },
    },
  },
  build: {
    outDir: "dist",
    sourcemap: true,
    emptyOutDir: true,
  },
  test: {
    environment: "jsdom",
    globals: true,
    setupFiles: ["./src/test/setup.ts"],
    include: ["src/**/*.test.{ts,tsx}"],
    css: false,
    // CI machines are shared and slow: generous limits, so only a real hang fails a test.
    testTimeout: 20_000,
    clearMocks: true,
    restoreMocks: true,
  },
});
