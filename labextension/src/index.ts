/**
 * iAvicenne in JupyterLab (and Notebook 7), as plugins that provide and require tokens:
 * the core (`iavicenne-lab:plugin`, the window's Collaboration and the settings) and, each
 * requiring it, the side panel, following a member, the status bar item, the
 * notifications of a mention or a direct message, and file sharing.
 */

import type { JupyterFrontEndPlugin } from "@jupyterlab/application";

import { corePlugin } from "./plugins/core";
import { fileSharingPlugin } from "./plugins/files";
import { followPlugin } from "./plugins/follow";
import { notificationsPlugin } from "./plugins/notifications";
import { panelPlugin } from "./plugins/panel";
import { statusBarPlugin } from "./plugins/status";

export { iavicenneIcon } from "./plugins/panel";
export { CommandIDs, ICollaboration, IRoomsPanel } from "./tokens";

const plugins: JupyterFrontEndPlugin<unknown>[] = [corePlugin, panelPlugin, followPlugin, statusBarPlugin, notificationsPlugin, fileSharingPlugin];

export default plugins;
