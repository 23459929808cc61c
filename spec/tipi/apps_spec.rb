# frozen_string_literal: true

require 'tmpdir'

# Real apps from Debian packages, served unmodified by the real `tipi` command, talked to with curl.
RSpec.describe 'tipi serving real apps' do
  def curl(*args)
    out, err, status = run_command('curl', '-s', '--max-time', '20', *args)
    expect(status).to be_success, err
    out
  end

  it 'serves a Sinatra app: route params, query params, a form POST and a cookie session' do
    tipi = TipiProcess.new('-q', '-l', '127.0.0.1:0', File.join(ROOT, 'spec', 'fixtures', 'tipi', 'sinatra', 'config.ru'))
    base = "http://127.0.0.1:#{tipi.port}"
    expect(curl("#{base}/hello/world?punctuation=%21")).to eq('Hello world!')
    Dir.mktmpdir do |dir|
      jar = File.join(dir, 'cookies')
      form = ['-c', jar, '-b', jar, '--data-urlencode', 'title=Fibers & fun', '-d', 'author=Ann', "#{base}/form"]
      expect(curl(*form)).to eq('Fibers & fun by Ann (post 1 in this session)')
      expect(curl(*form)).to eq('Fibers & fun by Ann (post 2 in this session)')
    end
    expect(curl('-o', '/dev/null', '-w', '%{http_code}', "#{base}/nowhere")).to eq('404')
  ensure
    tipi&.stop
  end

  it 'serves a minimal Rails 6.1 app rendering a page' do
    tipi = TipiProcess.new('-q', '-w', '2', '-l', '127.0.0.1:0',
                           File.join(ROOT, 'spec', 'fixtures', 'tipi', 'rails', 'config.ru'))
    base = "http://127.0.0.1:#{tipi.port}"
    page = curl('-i', "#{base}/?q=tipi")
    expect(page).to start_with("HTTP/1.1 200 OK\r\n")
    expect(page).to match(%r{content-type: text/html}i)
    expect(page).to match(%r{<h1>Rails 6\.1\.[\d.]+</h1><p>q=tipi</p>\z})
    expect(curl("#{base}/items/42.json")).to eq('{"id":"42","format":"application/json"}')
  ensure
    tipi&.stop
  end
end
