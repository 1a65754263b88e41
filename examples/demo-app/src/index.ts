export {
  DEMO_APP_MIGRATE,
  DEMO_APP_SERVER,
  type DemoAppOptions,
  type DemoAppServiceConfig,
  demoAppService,
  type RunningDemoApp,
  startDemoApp,
  waitHealthy,
} from './launch.ts';
export { migrate } from './schema.ts';
export { type SeedOptions, type SeedResult, seedDemo } from './seed.ts';
