# frozen_string_literal: true

require_relative '../support/polyphony_api'

# Polyphony 1.6's public API against this project's: every method the census says exists does,
# and docs/fibers.md carries the census's table as it is.
RSpec.describe "Polyphony's public API, entry by entry" do
  it 'has every method the census lists as the same or differing on purpose' do
    missing = PolyphonyAPI.methods.reject { |name| PolyphonyAPI.exists?(name) }
    expect(missing).to be_empty
  end

  it 'gives the census table in docs/fibers.md' do
    docs = File.read(File.join(ROOT, 'docs/fibers.md'))
    expect(docs).to include(PolyphonyAPI.table)
  end

  it 'explains every entry that differs or is absent' do
    unexplained = PolyphonyAPI::ENTRIES.select { |_, status, note| %i[differs absent].include?(status) && note.to_s.empty? }
    expect(unexplained).to be_empty
  end
end
