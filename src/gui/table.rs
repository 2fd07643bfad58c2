//! A searchable, sortable, virtualised table: only the visible rows are laid out, so 100,000
//! rows scroll as smoothly as ten. A click on a column's header sorts by it (again: the other
//! way).

use egui_extras::{Column, TableBuilder};

/// Rows of text cells plus the indices that match the current search.
#[derive(Debug, Default, Clone)]
pub struct Rows {
    pub cells: Vec<Vec<String>>,
    /// Lower-cased row text, for searching.
    haystack: Vec<String>,
    pub visible: Vec<usize>,
    query: String,
    /// The column the rows are sorted by, and whether descending.
    pub sorted: Option<(usize, bool)>,
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
            sorted: None,
        }
    }

    /// "3" or, while a search hides some rows, "1 of 3".
    pub fn count(&self) -> String {
        match self.visible.len() == self.cells.len() {
            true => self.cells.len().to_string(),
            false => format!("{} of {}", self.visible.len(), self.cells.len()),
        }
    }

    /// Sorts by `column`: ascending, or descending when it is already sorted ascending by it.
    pub fn sort_by(&mut self, column: usize) {
        let descending = self.sorted == Some((column, false));
        self.sorted = Some((column, descending));
        self.apply_sort();
    }

    fn apply_sort(&mut self) {
        let Some((column, descending)) = self.sorted else {
            return;
        };
        let cells = &self.cells;
        let key = |i: &usize| cells[*i].get(column).map_or("", String::as_str);
        self.visible.sort_by(|a, b| {
            let order = compare(key(a), key(b));
            if descending { order.reverse() } else { order }
        });
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
        self.apply_sort();
    }
}

/// Numbers as numbers ("9" before "10"), text without regard to case.
fn compare(a: &str, b: &str) -> std::cmp::Ordering {
    match (a.trim().parse::<f64>(), b.trim().parse::<f64>()) {
        (Ok(x), Ok(y)) => x.total_cmp(&y),
        _ => a.to_lowercase().cmp(&b.to_lowercase()),
    }
}

/// Draws the visible rows of `rows` under `headers`; a click on a header sorts by its column.
pub(super) fn show(ui: &mut egui::Ui, id: &str, headers: &[&str], rows: &mut Rows) {
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
    let mut clicked = None;
    builder
        .header(row_height, |mut header| {
            for (i, h) in headers.iter().enumerate() {
                header.col(|ui| {
                    let sorted = rows.sorted.filter(|(c, _)| *c == i).map(|(_, d)| d);
                    if ui
                        .add(egui::Button::new(egui::RichText::new(*h).strong()).frame(false))
                        .on_hover_text("Sort by this column (click again: the other way)")
                        .clicked()
                    {
                        clicked = Some(i);
                    }
                    if let Some(descending) = sorted {
                        arrow(ui, descending);
                    }
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
    if let Some(i) = clicked {
        rows.sort_by(i);
    }
}

/// A small triangle after the sorted column's name: up for ascending, down for descending.
fn arrow(ui: &mut egui::Ui, descending: bool) {
    let (rect, _) = ui.allocate_exact_size(egui::vec2(10.0, 10.0), egui::Sense::hover());
    let c = rect.center();
    let (tip, base) = if descending {
        (c.y + 4.0, c.y - 3.0)
    } else {
        (c.y - 4.0, c.y + 3.0)
    };
    ui.painter().add(egui::Shape::convex_polygon(
        vec![
            egui::pos2(c.x, tip),
            egui::pos2(c.x + 4.0, base),
            egui::pos2(c.x - 4.0, base),
        ],
        ui.visuals().text_color(),
        egui::Stroke::NONE,
    ));
}
