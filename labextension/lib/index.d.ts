/**
 * iAvicenne in JupyterLab (and Notebook 7): one side panel per window with the rooms,
 * their members and where they are, and the chat; a status bar item; notifications for a
 * mention or a direct message; commands; settings; following a member to their document.
 */
import { type JupyterFrontEndPlugin } from "@jupyterlab/application";
import { LabIcon } from "@jupyterlab/ui-components";
export declare const CommandIDs: {
    readonly openPanel: "iavicenne:open-panel";
    readonly joinRoom: "iavicenne:join-room";
    readonly setStatus: "iavicenne:set-status";
    readonly openDemo: "iavicenne:open-demo";
    readonly follow: "iavicenne:follow";
    readonly sendFile: "iavicenne:send-file";
};
export declare const iavicenneIcon: LabIcon;
declare const plugin: JupyterFrontEndPlugin<void>;
export default plugin;
