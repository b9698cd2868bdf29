// Applies window.localization (English text -> translation) to the page: text nodes, placeholders
// and titles, as they appear (Gradio renders lazily, so new nodes are watched).
(function () {
    const table = window.localization || {};
    if (!Object.keys(table).length) return;
    const translate = (text) => {
        const key = text.trim();
        return key && Object.prototype.hasOwnProperty.call(table, key) ? text.replace(key, table[key]) : null;
    };
    const skip = new Set(["SCRIPT", "STYLE", "TEXTAREA"]);
    function visit(node) {
        if (node.nodeType === Node.TEXT_NODE) {
            if (node.parentElement && skip.has(node.parentElement.tagName)) return;
            const done = translate(node.textContent);
            if (done !== null) node.textContent = done;
            return;
        }
        if (node.nodeType !== Node.ELEMENT_NODE || skip.has(node.tagName)) return;
        for (const attribute of ["placeholder", "title"]) {
            const value = node.getAttribute(attribute);
            const done = value ? translate(value) : null;
            if (done !== null) node.setAttribute(attribute, done);
        }
        node.childNodes.forEach(visit);
    }
    const observer = new MutationObserver((mutations) => {
        for (const mutation of mutations) {
            if (mutation.type === "characterData") visit(mutation.target);
            mutation.addedNodes.forEach(visit);
        }
    });
    const start = () => {
        visit(document.body);
        observer.observe(document.body, {childList: true, subtree: true, characterData: true});
    };
    if (document.body) start(); else document.addEventListener("DOMContentLoaded", start);
})();
