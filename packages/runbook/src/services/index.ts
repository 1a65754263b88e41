export { createCommandController, isPidAlive } from './command.js';
export { createComposeController } from './compose.js';
export {
  type CommandServiceConfig,
  type ComposeServiceConfig,
  type ControllerConfig,
  type ControllerDeps,
  createController,
  type KubernetesServiceConfig,
  REPLICAS_ANNOTATION,
  type ServiceAction,
  type ServiceActionOptions,
  type ServiceController,
  type ServiceLogsOptions,
  type ServiceStatus,
  type ServiceType,
  type SystemdServiceConfig,
} from './controller.js';
export { createKubernetesController } from './kubernetes.js';
export { createSystemdController } from './systemd.js';
