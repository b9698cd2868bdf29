() => {
    // Keyboard shortcuts in a tab's prompt boxes, as in A1111: Ctrl/Cmd+Enter generates,
    // Alt+Enter skips the current image, Escape interrupts. Prompt boxes have ids "<tab>_..._prompt",
    // the buttons "<tab>_generate|skip|interrupt".
    document.addEventListener("keydown", (event) => {
        const box = event.target.closest && event.target.closest("[id$='_prompt']");
        if (!box) return;
        const tab = box.id.split("_")[0];  // txt2img_prompt, txt2img_hr_neg_prompt -> txt2img
        let button = null;
        if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) button = "generate";
        else if (event.key === "Enter" && event.altKey) button = "skip";
        else if (event.key === "Escape") button = "interrupt";
        const target = button && document.getElementById(`${tab}_${button}`);
        if (!target) return;
        event.preventDefault();
        target.click();
    });
}
