/**
 * iAvicenne in JupyterLab (and Notebook 7): one side panel per window with the rooms,
 * their members and where they are, and the chat; a status bar item; notifications for a
 * mention or a direct message; commands; settings; following a member to their document.
 */

import { type JupyterFrontEnd, type JupyterFrontEndPlugin } from "@jupyterlab/application";
import { ICommandPalette, InputDialog, Notification, showDialog, Dialog } from "@jupyterlab/apputils";
import { PageConfig } from "@jupyterlab/coreutils";
import { IDocumentManager } from "@jupyterlab/docmanager";
import { IDefaultFileBrowser } from "@jupyterlab/filebrowser";
import { INotebookTracker, NotebookPanel } from "@jupyterlab/notebook";
import { IRenderMimeRegistry } from "@jupyterlab/rendermime";
import { ISettingRegistry } from "@jupyterlab/settingregistry";
import { IStatusBar } from "@jupyterlab/statusbar";
import { LabIcon } from "@jupyterlab/ui-components";
import { Widget } from "@lumino/widgets";

import { Collaboration, type Settings } from "./collaboration";
import { followTarget, labPresence, suggestedPath } from "./model";
import { RoomsPanel } from "./panel";

const PLUGIN_ID = "iavicenne-lab:plugin";

export const CommandIDs = {
  openPanel: "iavicenne:open-panel",
  joinRoom: "iavicenne:join-room",
  setStatus: "iavicenne:set-status",
  openDemo: "iavicenne:open-demo",
  follow: "iavicenne:follow",
  sendFile: "iavicenne:send-file",
} as const;

const iconSvg =
  '<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24"><g class="jp-icon3" fill="#616161">' +
  '<circle cx="8" cy="8" r="3.2"/><circle cx="16.5" cy="9" r="2.6"/><path d="M2 19c0-3.3 2.7-5.5 6-5.5s6 2.2 6 5.5v1H2z"/>' +
  '<path d="M15 20v-1c0-1.6-.5-3-1.5-4.1.9-.5 1.9-.8 3-.8 2.9 0 5.5 1.9 5.5 4.9v1z"/></g></svg>';
export const iavicenneIcon = new LabIcon({ name: "iavicenne-lab:people", svgstr: iconSvg });

function readSettings(settings: ISettingRegistry.ISettings | null): Settings {
  const composite = (settings?.composite ?? {}) as Record<string, unknown>;
  const rooms = Array.isArray(composite.rooms) ? composite.rooms.filter((room): room is string => typeof room === "string") : [];
  return {
    displayName: typeof composite.displayName === "string" ? composite.displayName : "",
    rooms,
    notifications: composite.notifications !== false,
    status: typeof composite.status === "string" ? composite.status : "",
  };
}

/** The status bar item: the connection's state and how many people are online. */
class StatusItem extends Widget {
  constructor(private readonly collaboration: Collaboration, onClick: () => void) {
    super();
    this.addClass("iav-lab-status");
    this.node.title = "iAvicenne: open the rooms panel";
    this.node.addEventListener("click", onClick);
    collaboration.changed.connect(() => this.render(), this);
    this.render();
  }

  render(): void {
    const state = this.collaboration.state;
    const online = this.collaboration.online;
    this.node.dataset.state = state;
    this.node.textContent = state === "online" ? `iAvicenne: ${online} online` : `iAvicenne: ${state}`;
  }
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: "iAvicenne rooms, people and chat in a side panel",
  autoStart: true,
  requires: [IRenderMimeRegistry],
  optional: [IDocumentManager, INotebookTracker, IStatusBar, ICommandPalette, ISettingRegistry, IDefaultFileBrowser],
  activate: async (
    app: JupyterFrontEnd,
    rendermime: IRenderMimeRegistry,
    docManager: IDocumentManager | null,
    notebooks: INotebookTracker | null,
    statusBar: IStatusBar | null,
    palette: ICommandPalette | null,
    settingRegistry: ISettingRegistry | null,
    fileBrowser: IDefaultFileBrowser | null,
  ) => {
    const baseUrl = PageConfig.getBaseUrl();
    const ourServer = new URL(baseUrl, window.location.href).href;
    const settings = settingRegistry ? await settingRegistry.load(PLUGIN_ID).catch(() => null) : null;
    let current = readSettings(settings);

    /** What this window shows now: the current document, and a notebook's active cell. */
    const presenceNow = () => {
      const widget = app.shell.currentWidget;
      const context = widget && docManager ? docManager.contextForWidget(widget) : undefined;
      let cell: number | null = null;
      let cellId: string | null = null;
      if (widget && notebooks && widget === notebooks.currentWidget) {
        const notebook = notebooks.currentWidget.content;
        cell = notebook.activeCellIndex >= 0 ? notebook.activeCellIndex : null;
        cellId = notebook.activeCell?.model.id ?? null;
      }
      return labPresence({
        status: current.status,
        displayName: current.displayName,
        document: context?.path ?? null,
        cell,
        cellId,
        server: ourServer,
      });
    };

    const collaboration = new Collaboration(baseUrl, current, presenceNow());
    const report = () => collaboration.setPresence(presenceNow());
    const shell = app.shell as JupyterFrontEnd.IShell & { currentChanged?: { connect: (fn: () => void) => void } };
    shell.currentChanged?.connect(report);
    notebooks?.activeCellChanged.connect(report);
    notebooks?.currentChanged.connect(report);

    const panel = new RoomsPanel(collaboration, rendermime, {
      follow: (room, user) => void app.commands.execute(CommandIDs.follow, { room, user }),
    });
    panel.title.icon = iavicenneIcon;
    app.shell.add(panel, "left", { rank: 900 });
    // exposed for the browser tests (as JupyterLab's own app is, with expose_app_in_browser)
    (window as unknown as { iavicenneLab?: unknown }).iavicenneLab = { collaboration, panel };

    settings?.changed.connect(() => {
      current = readSettings(settings);
      collaboration.settings = current;
      report();
    });

    collaboration.noticed.connect((_, { room, entry }) => {
      if (!collaboration.settings.notifications) return;
      const what = entry.direct ? `Direct message from ${entry.label}` : `${entry.label} mentioned you in ${room}`;
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

    if (statusBar) {
      const item = new StatusItem(collaboration, () => app.shell.activateById(panel.id));
      statusBar.registerStatusItem("iavicenne-lab:status", { item, align: "left", rank: 10 });
    }

    app.commands.addCommand(CommandIDs.openPanel, {
      label: "iAvicenne: Open the Rooms Panel",
      execute: () => app.shell.activateById(panel.id),
    });
    app.commands.addCommand(CommandIDs.joinRoom, {
      label: "iAvicenne: Join a Room…",
      execute: async (args) => {
        let name = typeof args.room === "string" ? args.room : "";
        if (!name) {
          const answer = await InputDialog.getText({ title: "Join a room", placeholder: "room name" });
          if (!answer.button.accept || !answer.value) return;
          name = answer.value.trim();
        }
        app.shell.activateById(panel.id);
        await panel.joinAndShow(name);
      },
    });
    app.commands.addCommand(CommandIDs.setStatus, {
      label: "iAvicenne: Set My Status…",
      execute: async (args) => {
        let status = typeof args.status === "string" ? args.status : null;
        if (status === null) {
          const answer = await InputDialog.getText({ title: "Your status", text: current.status, placeholder: "reviewing the Q3 forecast" });
          if (!answer.button.accept) return;
          status = answer.value ?? "";
        }
        current = { ...current, status };
        collaboration.settings = current;
        if (settings) await settings.set("status", status).catch(() => {});
        report();
      },
    });
    app.commands.addCommand(CommandIDs.openDemo, {
      label: "iAvicenne: Open the Demo Page",
      execute: () => window.open(`${baseUrl}iavicenne/`, "_blank", "noopener"),
    });
    app.commands.addCommand(CommandIDs.follow, {
      label: (args) => (typeof args.user === "string" ? `iAvicenne: Open What ${args.user} Is Looking At` : "iAvicenne: Follow"),
      execute: async (args) => {
        const room = collaboration.rooms.get(String(args.room ?? ""));
        const member = room?.room.members.get(String(args.user ?? ""));
        const target = followTarget(member?.state, ourServer);
        if (!member || !target) {
          await showDialog({ title: "Follow", body: `${String(args.user ?? "")} has no document open`, buttons: [Dialog.okButton()] });
          return;
        }
        if (!target.open || !docManager) {
          const reason = target.open ? "this window cannot open documents" : target.reason;
          await showDialog({
            title: `${member.user_id} is looking at`,
            body: `${target.path} (not opened: ${reason})`,
            buttons: [Dialog.okButton()],
          });
          return;
        }
        const widget = docManager.openOrReveal(target.path);
        if (widget instanceof NotebookPanel) {
          await widget.context.ready;
          await widget.revealed;
          const notebook = widget.content;
          let index = target.cell ?? -1;
          if (target.cellId) {
            const found = notebook.widgets.findIndex((cell) => cell.model.id === target.cellId);
            if (found >= 0) index = found;
          }
          if (index >= 0 && index < notebook.widgets.length) {
            notebook.activeCellIndex = index;
            await notebook.scrollToItem(index).catch(() => {});
          }
        }
      },
    });
    // files: what arrives is saved through the contents API, where the receiver chose
    const contents = app.serviceManager.contents;
    collaboration.save = async (path, data) => {
      let binary = "";
      for (let start = 0; start < data.byteLength; start += 0x8000) {
        binary += String.fromCharCode(...data.subarray(start, start + 0x8000));
      }
      await contents.save(path, { type: "file", format: "base64", content: btoa(binary) });
    };
    collaboration.offered.connect((_, { transfer }) => {
      const size = transfer.size < 1024 ? `${transfer.size} bytes` : `${Math.round(transfer.size / 1024)} KiB`;
      Notification.info(`${transfer.userId} sends you ${transfer.name} (${size})`, {
        autoClose: false,
        actions: [
          {
            label: "Save as…",
            callback: async () => {
              const suggested = suggestedPath(fileBrowser?.model.path ?? "", transfer.name);
              const answer = await InputDialog.getText({ title: `Save ${transfer.name} from ${transfer.userId} as`, text: suggested });
              if (!answer.button.accept || !answer.value) {
                await collaboration.declineFile(transfer.id);
                return;
              }
              app.shell.activateById(panel.id);
              await collaboration.acceptFile(transfer.id, answer.value.trim());
            },
          },
          { label: "Decline", callback: () => void collaboration.declineFile(transfer.id) },
        ],
      });
    });
    app.commands.addCommand(CommandIDs.sendFile, {
      label: "Send to a Member (iAvicenne)…",
      isEnabled: () => Boolean(panel.current) && Boolean(fileBrowser),
      execute: async (args) => {
        const room = panel.current;
        const item = typeof args.path === "string" ? { path: args.path, name: args.path.split("/").pop() ?? args.path } : fileBrowser?.selectedItems().next().value;
        if (!room || !item) return;
        const joined = collaboration.rooms.get(room);
        const others = [...(joined?.room.members.keys() ?? [])].filter((user) => user !== collaboration.me);
        let to = typeof args.to === "string" ? args.to : "";
        if (!to) {
          const answer = await InputDialog.getItem({ title: `Send ${item.name} to`, items: others });
          if (!answer.button.accept || !answer.value) return;
          to = answer.value;
        }
        const file = await contents.get(item.path, { type: "file", format: "base64", content: true });
        const bytes = Uint8Array.from(atob(String(file.content).replace(/\s/g, "")), (c) => c.charCodeAt(0));
        app.shell.activateById(panel.id);
        await collaboration.offerFile(room, to, item.name, bytes);
      },
    });
    app.contextMenu.addItem({ command: CommandIDs.sendFile, selector: '.jp-DirListing-item[data-isdir="false"]', rank: 20 });

    if (palette) {
      const category = "iAvicenne";
      for (const command of [CommandIDs.openPanel, CommandIDs.joinRoom, CommandIDs.setStatus, CommandIDs.openDemo]) {
        palette.addItem({ command, category });
      }
    }

    void collaboration.start();
  },
};

export default plugin;
