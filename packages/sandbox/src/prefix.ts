/** Every sandbox temp dir starts with this, which is how leak checks recognise them. */
export const SANDBOX_DIR_PREFIX = 'drkit-sandbox-';
