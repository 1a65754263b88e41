export { startUpdates, type UpdateCadence, type UpdateCadenceOptions } from './cadence.js';
export { createDispatcher, type DeliveryResult, type Dispatcher, type DispatcherOptions } from './dispatcher.js';
export { createFileNotifier, type FileNotifierOptions, formatBlock } from './file.js';
export {
  CATEGORIES,
  CATEGORY_ORDER,
  type Category,
  type CategoryInfo,
  ESCALATION_PATH,
  type Escalation,
  type EscalationLevel,
  escalationFor,
  SEVERITIES,
  SEVERITY_ORDER,
  type Severity,
  type SeverityInfo,
  UPDATE_EVERY_MS,
  worseSeverity,
} from './incident.js';
export type { HttpDeliveryOptions, Notification, NotificationKind, Notifier, SendOptions } from './notifier.js';
export { createSlackNotifier, escapeSlack, type SlackNotifierOptions, type SlackPayload, slackPayload } from './slack.js';
export {
  type ApprovalDetails,
  DEFAULT_PRODUCT,
  type FailureDetails,
  formatDuration,
  type IncidentInfo,
  type OverrunDetails,
  renderApproval,
  renderFailure,
  renderInitial,
  renderOverrun,
  renderResolution,
  renderUpdate,
} from './templates.js';
export { createWebhookNotifier, type WebhookNotifierOptions, type WebhookPayload, webhookPayload } from './webhook.js';
