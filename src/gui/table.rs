//! A searchable, virtualised table: only the visible rows are laid out, so 100,000 rows scroll
//! as smoothly as ten.

use egui_extras::{Column, TableBuilder};

/// Rows of text cells plus the indices that match the current search.
#[derive(Debug, Default, Clone)]
pub struct Rows {
    pub cells: Vec<Vec<String>>,
    /// Lower-cased row text, for searching.
    haystack: Vec<String>,
    pub visible: Vec<usize>,
    query: String,
}

impl Rows {
    pub fn new(cells: Vec<Vec<String>>) -> Rows {
        let haystack = cells
            .iter()
            .map(|r| r.join("\u{1f}").to_lowercase())
            .collect();
        let visible = (0..cells.len()).collect();
        Rows {
            cells,
            haystack,
            visible,
            query: String::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.cells.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }

    /// Re-filters when the query changed.
    pub fn filter(&mut self, query: &str) {
        let q = query.trim().to_lowercase();
        if q == self.query {
            return;
        }
        self.visible = if q.is_empty() {
            (0..self.cells.len()).collect()
        } else {
            self.haystack
                .iter()
                .enumerate()
                .filter(|(_, h)| h.contains(&q))
                .map(|(i, _)| i)
                .collect()
        };
        self.query = q;
    }
}

/// Draws the visible rows of `rows` under `headers`.
pub(super) fn show(ui: &mut egui::Ui, id: &str, headers: &[&str], rows: &Rows) {
    let row_height = ui.text_style_height(&egui::TextStyle::Body) + 6.0;
    let mut builder = TableBuilder::new(ui)
        .id_salt(id)
        .striped(true)
        .resizable(true)
        .auto_shrink([false, false])
        .cell_layout(egui::Layout::left_to_right(egui::Align::Center));
    for i in 0..headers.len() {
        builder = if i + 1 == headers.len() {
            builder.column(Column::remainder().clip(true))
        } else {
            builder.column(Column::initial(200.0).at_least(60.0).clip(true))
        };
    }
    builder
        .header(row_height, |mut header| {
            for h in headers {
                header.col(|ui| {
                    ui.strong(*h);
                });
            }
        })
        .body(|body| {
            body.rows(row_height, rows.visible.len(), |mut row| {
                let i = rows.visible[row.index()];
                for cell in &rows.cells[i] {
                    row.col(|ui| {
                        ui.label(cell);
                    });
                }
            });
        });
}
