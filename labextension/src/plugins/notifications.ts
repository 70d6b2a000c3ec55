/** The notifications plugin: a JupyterLab notification for a mention or a direct message. */

import type { JupyterFrontEnd, JupyterFrontEndPlugin } from "@jupyterlab/application";
import { Notification } from "@jupyterlab/apputils";

import type { Collaboration } from "../collaboration";
import { personOf, personText, safeName } from "../names";
import type { RoomsPanel } from "../panel";
import { ICollaboration, IRoomsPanel } from "../tokens";

export const notificationsPlugin: JupyterFrontEndPlugin<void> = {
  id: "iavicenne-lab:notifications",
  description: "Notifications of iAvicenne mentions and direct messages",
  autoStart: true,
  requires: [ICollaboration, IRoomsPanel],
  activate: (app: JupyterFrontEnd, collaboration: Collaboration, panel: RoomsPanel): void => {
    collaboration.noticed.connect((_, { room, entry }) => {
      if (!collaboration.settings.notifications) return;
      // the sender by their verified username first: a display name cannot pass for another
      const joined = collaboration.rooms.get(room);
      const from = personText(joined ? panel.personIn(joined, entry.userId) : personOf(undefined, entry.userId));
      const what = entry.direct ? `Direct message from ${from}` : `${from} mentioned you in ${safeName(room)}`;
      const excerpt = entry.text.length > 140 ? `${entry.text.slice(0, 140)}…` : entry.text;
      // the Notification API shows its message as text
      Notification.info(`${what}: ${excerpt}`, {
        autoClose: 8000,
        actions: [
          {
            label: "Open",
            callback: () => {
              app.shell.activateById(panel.id);
              panel.showRoom(room);
            },
          },
        ],
      });
    });
  },
};
